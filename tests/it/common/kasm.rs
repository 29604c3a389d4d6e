//! A database shaped like Kasm Workspaces' own (`kasm`, owned by `kasmapp`): `alembic_version`,
//! users, groups, sessions and settings with uuid keys (the trusted `uuid-ossp` extension), a
//! view, and Kasm's plain (not partitioned) `logs` table with `ingest_date`, `levelname`,
//! `data json` and `metric_name`, its indexes and rows. Shared by tests/it/kasm_shaped.rs and
//! tests/it/managed_role.rs; the callers decide who creates the role and the database.
#![allow(dead_code)]

/// Kasm's schema revision in the seeded `alembic_version`.
pub const ALEMBIC: &str = "6f2c1e9b7a41";

/// The tables besides `logs`, whose content a restore must bring back identical.
pub const TABLES: [&str; 6] = [
    "alembic_version",
    "groups",
    "users",
    "user_groups",
    "kasms",
    "settings",
];

pub const USERS: i64 = 300;
pub const LOGS: i64 = 6000;

/// The schema and rows, run inside the database by (or as, via SET ROLE) its owner.
pub const SCHEMA_SQL: &str = r#"
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE TABLE alembic_version (
    version_num varchar(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('6f2c1e9b7a41');
CREATE TABLE groups (
    group_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    name varchar(255) NOT NULL UNIQUE,
    priority integer);
CREATE TABLE users (
    user_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    username varchar(255) NOT NULL UNIQUE,
    pw_hash varchar(255), salt varchar(255), api_key text,
    created timestamp without time zone DEFAULT now(),
    locked boolean DEFAULT false);
CREATE TABLE user_groups (
    user_group_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id uuid REFERENCES users ON DELETE CASCADE,
    group_id uuid REFERENCES groups ON DELETE CASCADE);
CREATE TABLE kasms (
    kasm_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id uuid REFERENCES users,
    start_date timestamp without time zone,
    operational_status varchar(255),
    container_info json);
CREATE TABLE settings (
    setting_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    name varchar(255) NOT NULL UNIQUE, value text, category varchar(255));
CREATE TABLE logs (
    log_id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    ingest_date timestamp without time zone NOT NULL DEFAULT now(),
    data json,
    levelname varchar(255),
    host varchar(255),
    application varchar(255),
    kasm_user_name varchar(255),
    metric_name varchar(255),
    process varchar(255),
    message text);
CREATE INDEX logs_ingest_date_idx ON logs (ingest_date);
CREATE INDEX logs_levelname_idx ON logs (levelname);
CREATE INDEX logs_metric_name_idx ON logs (metric_name);
CREATE VIEW user_kasm_counts AS
    SELECT u.username, count(k.kasm_id) AS kasms
    FROM users u LEFT JOIN kasms k USING (user_id) GROUP BY u.username;
INSERT INTO groups (name, priority) VALUES ('All Users', 1000), ('Administrators', 1);
INSERT INTO users (username, pw_hash, salt, api_key)
    SELECT 'user' || i || '@kasm.local', md5('pw' || i), md5('salt' || i), md5('key' || i)
    FROM generate_series(1, 300) i;
INSERT INTO user_groups (user_id, group_id)
    SELECT u.user_id, g.group_id FROM users u CROSS JOIN groups g WHERE g.name = 'All Users';
INSERT INTO kasms (user_id, start_date, operational_status, container_info)
    SELECT user_id, created, 'running', json_build_object('port', 6901, 'user', username)
    FROM users;
INSERT INTO settings (name, value, category) VALUES
    ('log_retention', '7', 'logging'), ('debug_log_retention', '4', 'logging'),
    ('session_lifetime', '86400', 'auth');
INSERT INTO logs (ingest_date, data, levelname, host, application, kasm_user_name,
                  metric_name, process, message)
    SELECT now() - i * interval '1 second',
           json_build_object('message', 'message ' || i, 'levelname',
                             CASE WHEN i % 5 = 0 THEN 'DEBUG' ELSE 'INFO' END,
                             'funcName', 'handle', 'lineno', i % 400),
           CASE WHEN i % 5 = 0 THEN 'DEBUG' ELSE 'INFO' END, 'kasm-web-1', 'kasm_api',
           'user' || (1 + i % 300) || '@kasm.local',
           CASE WHEN i % 10 = 0 THEN 'cpu_percent' END, 'api_server', 'message ' || i
    FROM generate_series(1, 6000) i;
"#;

/// Row count and content digest of `table`, through `sql` (one database).
pub fn digest(sql: impl Fn(&str) -> String, table: &str) -> String {
    sql(&format!(
        "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))
         FROM {table} t"
    ))
}

/// The definition of `logs` (columns, types, nullability) and its indexes, for comparison.
pub fn logs_definition(sql: impl Fn(&str) -> String) -> String {
    sql(
        "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', '
                           ORDER BY ordinal_position)
                || ' | ' || (SELECT string_agg(indexdef, '; ' ORDER BY indexname)
                             FROM pg_indexes WHERE tablename = 'logs' AND schemaname = 'public')
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'logs'",
    )
}
