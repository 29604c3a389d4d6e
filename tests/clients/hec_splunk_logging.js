// The published `splunk-logging` (npm, Splunk's own Node.js library) against kasm-db's HEC
// receiver, batching 10 events per request. Usage: node hec_splunk_logging.js PORT TOKEN COUNT.
const SplunkLogger = require("splunk-logging").Logger;
const [port, token, count] = process.argv.slice(2);
const logger = new SplunkLogger({
  token,
  url: `http://127.0.0.1:${port}`,
  maxBatchCount: 10,
  maxRetries: 2,
});
logger.error = (err) => {
  console.error(`splunk-logging error: ${err.message}`);
  process.exitCode = 1;
};
const severities = ["debug", "info", "warn", "error"];
for (let i = 0; i < Number(count); i++) {
  logger.send({
    message: `js event ${i}`,
    severity: severities[i % severities.length],
    metadata: { host: "node-host", source: "kasm-js", sourcetype: "kasm:js", index: "kasm" },
  });
}
logger.flush();
