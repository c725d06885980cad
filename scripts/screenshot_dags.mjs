// Screenshots of the DAGs in the Airflow UI, taken in headless Chromium (puppeteer-core +
// @sparticuz/chromium: a Chromium build that comes from the npm registry). Used by
// scripts/screenshot_dags.sh; args: base URL, output folder, then DAG ids (the graph view:
// docs/<dag>_graph.png), DAG=RUN_ID pairs (that run's graph with its task states:
// docs/<dag>_run.png) or DAG=RUN_ID/TASK (that task instance's details: docs/<dag>_<task>_details.png). $AIRFLOW_TOKEN (a JWT from /auth/token) logs in where the UI needs it.
import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const [base, outDir, ...items] = process.argv.slice(2);
const browser = await puppeteer.launch({ args: chromium.args, executablePath: await chromium.executablePath(),
                                         headless: true, defaultViewport: { width: 2600, height: 900 } });
const page = await browser.newPage();
if (process.env.AIRFLOW_TOKEN) {
  await page.setCookie({ name: "_token", value: process.env.AIRFLOW_TOKEN, url: base });
}
for (const item of items) {
  const [dag, rest] = item.split("=");
  const [run, task] = (rest ?? "").split("/");
  if (task) {                                             // a task instance's details: queue, hostname, executor
    await page.setViewport({ width: 1500, height: 1100 });
    await page.goto(`${base}/dags/${dag}/runs/${encodeURIComponent(run)}/tasks/${task}/details`,
                    { waitUntil: "networkidle0", timeout: 60000 });
    await new Promise(r => setTimeout(r, 2000));
    const out = `${outDir}/${dag}_${task}_details.png`;
    await page.screenshot({ path: out });
    console.log(out);
    await page.setViewport({ width: 2600, height: 900 });
    continue;
  }
  const url = run ? `${base}/dags/${dag}/runs/${encodeURIComponent(run)}` : `${base}/dags/${dag}`;
  await page.goto(url, { waitUntil: "networkidle0", timeout: 60000 });
  const graph = await page.waitForSelector('button[aria-label^="Show Graph"]', { timeout: 30000 });
  if (await graph.evaluate(b => b.getAttribute("aria-pressed") !== "true")) await graph.click();
  await page.waitForSelector(".react-flow__node", { timeout: 30000 });
  await new Promise(r => setTimeout(r, 2500));           // the layout animation settles
  const out = `${outDir}/${dag}_${run ? "run" : "graph"}.png`;
  // the graph pane alone, on a wide page: a long DAG fitted to it stays legible
  const pane = await page.$(".react-flow");
  await (pane ?? page).screenshot({ path: out });
  console.log(out);
}
await browser.close();
