# Shared by bench/backup.sh and bench/restore.sh (source it after setting SCALE and LOG_ROWS):
# a throwaway cluster on a Unix socket (removed at exit, with a moto_server the caller started
# and put in $moto_pid), the Kasm-like database `bench` (pgbench tables at scale $SCALE plus
# $LOG_ROWS generated records in kasm-db's `logs`), its size in $db_bytes, and
# `measure NAME CMD...` (wall seconds and peak RSS into $secs and $rss). Touches no other server.
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/kasm-db}
if [ ! -x "$BIN" ]; then cargo build --release; fi

bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
work=$(mktemp -d /tmp/kasm-db-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
moto_pid=""
cleanup() {
  as_pg "'$bindir/pg_ctl' -D '$work/data' -m fast stop" >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"
as_pg "'$bindir/initdb' -D '$work/data' -U postgres --auth=trust --no-sync -E UTF8 --locale=C" >/dev/null
# autovacuum off: it would VACUUM and ANALYZE the 4M rows one timed command just loaded while
# the next command is timed (a restore after `pg_restore -d` measured 1.2-2 s slower that way).
as_pg "'$bindir/pg_ctl' -D '$work/data' -l '$work/server.log' -w -o \"-p $port -k $work -c listen_addresses='' -c fsync=off -c max_wal_size=4GB -c autovacuum=off\" start" >/dev/null

export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=bench
for v in $(env | grep -o '^KASM_DB_[A-Z_]*' || true); do unset "$v"; done
"$bindir/createdb" bench
echo "building the database: pgbench scale $SCALE + $LOG_ROWS log records..." >&2
"$bindir/pgbench" -i -q -s "$SCALE" bench >/dev/null 2>&1
"$BIN" migrate -q >/dev/null
SHAPE=${BENCH_SHAPE:-$([ "${BENCH_LOGS:-varied}" = md5 ] && echo catchall || echo kasm)}
if [ "$SHAPE" = kasm ]; then
# The partitions kasm-db makes: hourly for debug records (kept 4 hours), daily for the others
# (kept 7 days), named as kasm-db names them; the records are spread over those windows (the
# default, except with BENCH_LOGS=md5).
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 <<'SQL'
SET TIME ZONE 'UTC';
DO $$
DECLARE h timestamptz;
BEGIN
  FOR h IN SELECT date_trunc('hour', now()) - k * interval '1 hour' FROM generate_series(-1, 4) k LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF logs_debug FOR VALUES FROM (%L) TO (%L)',
                   'logs_debug_p' || to_char(h, 'YYYYMMDDHH24'), h, h + interval '1 hour');
  END LOOP;
  FOR h IN SELECT date_trunc('day', now()) - k * interval '1 day' FROM generate_series(-1, 7) k LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF logs_logs FOR VALUES FROM (%L) TO (%L)',
                   'logs_logs_p' || to_char(h, 'YYYYMMDD'), h, h + interval '1 day');
  END LOOP;
END $$;
SQL
else
# BENCH_SHAPE=catchall: one partition per class for every time (the shape of the runs before
# 2026-11-29 20:00 UTC in BENCHMARKS.md); the records are 37 ms apart.
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE logs_debug_all PARTITION OF logs_debug FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
SQL
fi
if [ "${BENCH_LOGS:-varied}" = md5 ]; then
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
SELECT gen_random_uuid(), now() - (i || ' s')::interval, now() - (i || ' s')::interval,
       (ARRAY['DEBUG','INFO','INFO','WARNING','ERROR'])[1 + i % 5], 'kasm-agent-' || (i % 7),
       (ARRAY['kasm_api','kasm_manager','kasm_agent','kasm_proxy'])[1 + i % 4], 'user' || (i % 300) || '@example.com',
       'session ' || md5(i::text) || ' state change ' || (i % 17),
       jsonb_build_object('levelname','INFO','message','session ' || md5(i::text),'host','kasm-agent-' || (i % 7),'seq',i)
FROM generate_series(1, $LOG_ROWS) i;
SQL
else
# Varied records, shaped like real Kasm component logs (python-json-logger): messages from
# templates filled with UUIDs, user names, IPs, image names and durations, free text of words,
# and Python tracebacks on errors; `data` holds the whole record as ingest stores it.
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -v LOG_ROWS="$LOG_ROWS" -v SHAPE="$SHAPE" <<'SQL'
CREATE TEMP TABLE vocab AS SELECT
  '{the,session,agent,user,request,image,container,failed,started,stopped,timeout,connection,
    refused,reset,retry,queue,proxy,stream,token,expired,invalid,license,zone,server,pool,
    provision,destroy,created,resume,pause,heartbeat,upload,download,file,mapping,volume,
    network,bridge,gpu,memory,cpu,limit,exceeded,policy,group,permission,denied,allowed,
    cookie,redirect,login,logout,saml,oidc,ldap,sync,attribute,checking,waiting,for,after,
    with,from,to,on,in,of,and,not,was,is,could,be,found,no,available,scheduled,cleanup,
    recording,webhook,staging,autoscale,cast,share,join,viewer,keepalive,latency,slow,
    query,database,redis,manager,api,rdp,vnc,kasmvnc,audio,microphone,webcam,printer,
    clipboard,blocked,unexpected,response,status,code,payload,header,certificate,verify}'::text[] AS w,
  '{alice,bob,carol,dave,erin,frank,grace,heidi,ivan,judy,mallory,niaj,olivia,peggy,rupert,sybil,trent,victor,walter,yusuf,zoe,liam,noah,emma,ava,mia,lucas,mateo,sofia,chen,priya,arjun,fatima,omar,hana,kenji,lena,marek,ines}'::text[] AS fst,
  '{smith,jones,garcia,miller,davis,rodriguez,martinez,hernandez,lopez,wilson,anderson,thomas,taylor,moore,jackson,martin,lee,perez,thompson,white,harris,clark,lewis,walker,young,king,wright,scott,green,baker,adams,nelson,hill,campbell,mitchell,roberts}'::text[] AS lst,
  '{acme.com,example.org,corp.example.net,contoso.com,fabrikam.io,globex.example}'::text[] AS dom,
  '{kasmweb/chrome:1.16.0,kasmweb/firefox:1.16.0,kasmweb/ubuntu-jammy-desktop:1.16.0,kasmweb/vs-code:1.16.0,kasmweb/terminal:1.16.0,kasmweb/edge:1.16.1,kasmweb/libre-office:1.16.0,kasmweb/gimp:1.16.0}'::text[] AS img,
  '{request_kasm,get_user_images,check_session,heartbeat,destroy_kasm,authenticate,get_kasm_status,provision_agent,sync_ldap,upload_file,get_settings,resume_kasm}'::text[] AS fn,
  '{api/public,api/admin,manager/scheduler,agent/docker_client,proxy/connection,share/session,utils/database,providers/saml}'::text[] AS md,
  '{KeyError,ValueError,TimeoutError,ConnectionResetError,psycopg2.OperationalError,docker.errors.APIError,requests.exceptions.ReadTimeout,sqlalchemy.exc.IntegrityError}'::text[] AS exc,
  '{"result = self.session.query(Kasm).filter(Kasm.kasm_id == kasm_id).one()","response = requests.post(url, json=payload, timeout=self.timeout)","container = self.client.containers.run(**kwargs)","return self._handle(request, *args, **kwargs)","user = self.authenticate(username, password, token)","raise ValueError(f\"invalid image {image_id}\")"}'::text[] AS code;
SELECT setseed(0.15) \g /dev/null
INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
SELECT log_id, ts, ts, lvl, host, app, usr, msg,
       jsonb_build_object('asctime', to_char(ts, 'YYYY-MM-DD HH24:MI:SS,MS'), 'levelname', lvl,
         'name', app || '.' || split_part(mod, '/', 2), 'application', app, 'host', host,
         'process', pid, 'thread', tid, 'funcName', func, 'lineno', lineno, 'message', msg,
         'kasm_user_name', usr, 'kasm_id', kasm_id, 'client_ip', ip,
         'exc_info', CASE WHEN lvl = 'ERROR' THEN trace END)
FROM (
  SELECT r.*, v.*,
    -- kasm shape: debug records over the last 3.9 hours, the others over the last 6.9 days
    CASE WHEN :'SHAPE' <> 'kasm' THEN now() - (r.i * interval '37 ms')
         WHEN lvl = 'DEBUG' THEN now() - (r.i * interval '14 ms')
         ELSE now() - (r.i * interval '600 ms') END AS ts,
    CASE WHEN lvl = 'ERROR' THEN 'Traceback (most recent call last):' || E'\n' ||
      (SELECT string_agg(format('  File "/src/%s.py", line %s, in %s', md[1 + (random() * 7)::int],
                                10 + (random() * 2000)::int, fn[1 + (random() * 11)::int])
                         || E'\n    ' || code[1 + (random() * 5)::int] || left(g::text, 0), E'\n')
       FROM generate_series(1, 2 + r.i % 5) g WHERE r.i > 0)
      || E'\n' || exc[1 + (r.i % 8)] || ': ' || format('%s %s', w[1 + (random() * 120)::int], gen_random_uuid())
    END AS trace,
    CASE (r.i % 10)
      WHEN 0 THEN format('Kasm (%s) created for user (%s) with image (%s) on agent (%s)', kasm_id, usr, img[1 + (random() * 7)::int], gen_random_uuid())
      WHEN 1 THEN format('User (%s) authenticated from %s via %s', usr, ip, (ARRAY['password','saml','oidc','ldap'])[1 + (random() * 3)::int])
      WHEN 2 THEN format('Heartbeat from agent (%s): %s sessions, cpu %s%%, memory %s MB free', gen_random_uuid(), (random() * 40)::int, (random() * 100)::int, (random() * 64000)::int)
      WHEN 3 THEN format('Request %s %s completed in %s ms with status %s', (ARRAY['GET','POST','POST','DELETE'])[1 + (random() * 3)::int], '/api/public/' || fn[1 + (random() * 11)::int], (random() * 3000)::int, (ARRAY[200,200,200,400,401,403,404,500])[1 + (random() * 7)::int])
      WHEN 4 THEN format('Destroying kasm (%s) for user (%s): %s', kasm_id, usr, (SELECT string_agg(w[1 + (random() * 120)::int] || left(g::text, 0), ' ') FROM generate_series(1, 3 + (random() * 8)::int) g WHERE r.i > 0))
      ELSE (SELECT string_agg(w[1 + (random() * 120)::int] || left(g::text, 0), ' ') FROM generate_series(1, 4 + (random() * 14)::int) g WHERE r.i > 0)
           || format(' (%s)', CASE WHEN r.i % 3 = 0 THEN usr ELSE kasm_id::text END)
    END AS msg
  FROM vocab v, LATERAL (
    SELECT i, gen_random_uuid() AS log_id, gen_random_uuid() AS kasm_id,
      (ARRAY['DEBUG','DEBUG','DEBUG','INFO','INFO','INFO','INFO','WARNING','INFO','ERROR'])[1 + (random() * 9)::int] AS lvl,
      'kasm-' || (ARRAY['web','agent','agent','proxy'])[1 + (i % 4)] || '-' || (i % 5) AS host,
      (ARRAY['kasm_api','kasm_manager','kasm_agent','kasm_share','kasm_proxy'])[1 + (i % 5)] AS app,
      fst[1 + (random() * 38)::int] || '.' || lst[1 + (random() * 35)::int] || (random() * 99)::int || '@' || dom[1 + (random() * 5)::int] AS usr,
      format('10.%s.%s.%s', (random() * 255)::int, (random() * 255)::int, (random() * 255)::int) AS ip,
      md[1 + (random() * 7)::int] AS mod, fn[1 + (random() * 11)::int] AS func,
      1000 + (random() * 30000)::int AS pid, 139800000000000 + (random() * 1e9)::bigint AS tid,
      10 + (random() * 2000)::int AS lineno
    FROM generate_series(1, :LOG_ROWS) i) r
) s;
SQL
fi
"$bindir/psql" -X -q -c 'VACUUM ANALYZE' >/dev/null
db_bytes=$("$bindir/psql" -X -At -c "SELECT pg_database_size('bench')")

# measure NAME CMD...: wall seconds and peak RSS (KiB) into $secs / $rss. Each command starts
# with nothing dirty (a CHECKPOINT, then sync): otherwise the checkpoint that the previous
# command's WAL triggers, and the page cache's writeback, run during the next command.
measure() {
  local name=$1; shift
  "$bindir/psql" -X -q -c CHECKPOINT >/dev/null; sync
  /usr/bin/time -v "$@" >"$work/$name.out" 2>"$work/$name.time" || { cat "$work/$name.time" >&2; exit 1; }
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$work/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/$name.time")
}
