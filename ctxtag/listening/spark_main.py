"""The data plane's stages as a Spark application: what the Airflow DAGs hand to spark-submit
(the Spark provider's SparkSubmitOperator) when the data plane runs on a cluster.

    spark-submit --master spark://host:7077 ctxtag/listening/spark_main.py ingest-logs --project /srv/ctxtag

It runs the same stage functions as `ctxtag ingest-logs` / `ctxtag publish-features`, with
params.data_plane.engine set to spark: the SQL runs on the session spark-submit made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

STAGES = {"ingest-logs": "ingest_logs", "publish-features": "publish_features"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--project", default=os.environ.get("CTXTAG_PROJECT", "."),
                        help="the ctxtag checkout whose params.yaml and data/ are used")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    os.chdir(Path(args.project))
    import importlib

    from ctxtag.config import load_params

    params = load_params(args.params)
    params = dataclasses.replace(params, data_plane=dataclasses.replace(params.data_plane, engine="spark"))
    result = importlib.import_module(f"ctxtag.stages.{STAGES[args.stage]}").run(params)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
