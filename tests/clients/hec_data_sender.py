"""The published `splunk-data-sender` (PyPI) against kasm-db's HEC receiver: health check, data
channel in the URL and in the header, gzip, sourcetype _json with indexed `fields`, and indexer
acknowledgement. Usage: hec_data_sender.py PORT TOKEN CHANNEL. Prints one JSON line per step."""
import json
import sys

from splunk_data_sender import SplunkSender

port, token, channel = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
for where in ("url", "header"):
    sender = SplunkSender(
        endpoint="127.0.0.1", port=port, token=token, protocol="http", verify=False,
        source="kasm-agent", source_type="_json", index="kasm", hostname="agent-host",
        channel=channel, channel_in=where, compress=True, retry_count=1, timeout=10,
    )
    out["health"] = sender.get_health()
    records = [{"levelname": "ERROR", "message": "sender %s %d" % (where, i), "seq": i,
                "kasm_user_name": "carol"} for i in range(3)]
    answer = sender.send_data(records)
    out[where] = answer
    out[where + "_acks"] = sender.send_acks([answer["ackId"]])
print(json.dumps(out))
