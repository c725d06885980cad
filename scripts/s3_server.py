"""The stack's local S3: moto's server, whose objects live in memory, made to survive a restart.

moto can record the requests it serves to a file and replay them at the next start. As shipped,
its recorder writes every request (reads too) with two unlocked writes, so concurrent uploads (a
DVC push, MLflow's artifacts) interleave into lines that cannot be read back. Here only the
requests that change something are recorded (PUT, POST, DELETE), one whole line at a time under a
lock; and the replay (scripts/stack.sh calls it after a start) maps each multipart upload's
recorded id to the one the new server hands out, which moto's own replay does not (a part sent to
the old id is refused, and the object is lost).

    python scripts/s3_server.py -H 127.0.0.1 -p 9000        (MOTO_RECORDER_FILEPATH: the recording)
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
from urllib.parse import parse_qs, urlparse

import requests
from moto.moto_api._internal.recorder.models import Recorder
from moto.server import main

_record = Recorder._record_request
_lock = threading.Lock()


def _record_changes(self, request, body=None) -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    with _lock:
        _record(self, request, body)


def _replay(self, target_host=None) -> None:
    enabled, self._user_enabled = self._user_enabled, False       # the replay is not recorded again
    given: dict[str, str] = {}           # recorded upload id -> this server's
    opened: dict[str, list[str]] = {}    # an object's uploads opened by the replay, not yet matched
    try:
        with open(self._location) as fh:
            for line in fh:
                entry = json.loads(line)
                body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else entry.get("body", "")
                headers = {k: v for k, v in entry["headers"].items() if k != "Transfer-Encoding"}
                url = entry["url"]
                where = urlparse(url)
                query = parse_qs(where.query, keep_blank_values=True)
                if "uploadId" in query:
                    recorded = query["uploadId"][0]
                    if recorded not in given and opened.get(where.path):
                        given[recorded] = opened[where.path].pop(0)
                    url = url.replace(recorded, given.get(recorded, recorded))
                reply = requests.request(entry["method"], url, headers=headers, data=body, timeout=60)
                if entry["method"] == "POST" and "uploads" in query:
                    found = re.search(r"<UploadId>([^<]+)</UploadId>", reply.text)
                    if found:
                        opened.setdefault(where.path, []).append(found.group(1))
    finally:
        self._user_enabled = enabled


Recorder._record_request = _record_changes
Recorder.replay_recording = _replay

if __name__ == "__main__":
    main(sys.argv[1:])
