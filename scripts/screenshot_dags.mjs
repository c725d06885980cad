// Screenshots of the DAG graphs in the Airflow UI, taken in headless Chromium (puppeteer-core +
// @sparticuz/chromium: a Chromium build that comes from the npm registry). Used by
// scripts/screenshot_dags.sh; args: base URL, output folder, DAG ids.
import chromium from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";

const [base, outDir, ...dags] = process.argv.slice(2);
const browser = await puppeteer.launch({ args: chromium.args, executablePath: await chromium.executablePath(),
                                         headless: true, defaultViewport: { width: 1500, height: 620 } });
const page = await browser.newPage();
for (const dag of dags) {
  await page.goto(`${base}/dags/${dag}`, { waitUntil: "networkidle0", timeout: 60000 });
  const graph = await page.waitForSelector('button[aria-label^="Show Graph"]', { timeout: 30000 });
  if (await graph.evaluate(b => b.getAttribute("aria-pressed") !== "true")) await graph.click();
  await page.waitForSelector(".react-flow__node", { timeout: 30000 });
  await new Promise(r => setTimeout(r, 2500));           // the layout animation settles
  await page.screenshot({ path: `${outDir}/${dag}_graph.png` });
  console.log(`${outDir}/${dag}_graph.png`);
}
await browser.close();
