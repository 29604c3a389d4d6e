"""A Python service logging through the published `splunk_handler` (PyPI splunk-handler) with
python-json-logger's JsonFormatter, the usual setup: every HEC `event` is a string holding the
record as JSON. Usage: hec_splunk_handler.py PORT TOKEN COUNT. Exit 0 once everything was posted."""
import logging
import sys

from pythonjsonlogger.json import JsonFormatter
from splunk_handler import SplunkHandler

port, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = SplunkHandler(
    host="127.0.0.1", port=port, token=token, index="kasm", protocol="http", verify=False,
    source="kasm_api", sourcetype="_json", hostname="envelope-host",
    flush_interval=0.05, retry_count=3, retry_backoff=0.1, timeout=10,
)
handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
log = logging.getLogger("kasm.api")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(handler)
levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
for i in range(count):
    log.log(levels[i % 5], "event %d with \"quotes\" and ünïcode", i,
            extra={"host": "web%d" % (i % 3), "application": "kasm_api",
                   "kasm_user_name": "user%d@example.com" % (i % 4), "seq": i})
handler.force_flush()
handler.close()
