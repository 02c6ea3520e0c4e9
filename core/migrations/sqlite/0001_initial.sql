-- Sluice system schema, version 1 (SQLite).
--
-- Conventions shared with the PostgreSQL migration of the same number:
-- * Every timestamp is a BIGINT holding milliseconds since the Unix epoch, UTC
--   (`sluice_core::now_ms()`), so both backends compare and sort times the same way and
--   no time zone setting of a server or a session can change a value.
-- * Status columns hold Qorus's one-letter codes as TEXT, guarded by CHECK constraints.
--   (TEXT rather than CHAR(1) because on PostgreSQL a text bind compared with a bpchar
--   column is cast on the column side, which stops the index from being used.)
-- * JSON documents (order data, options, endpoint lists) are stored as TEXT.
-- * Booleans are INTEGER 0/1 here and BOOLEAN on PostgreSQL; sqlx decodes both as bool.
-- * Table and column names follow Qorus where it has one. A later migration may add
--   tables and columns but should not reshape these.

-- Application sessions: one ACTIVE row per running instance key. Session 0 is a sentinel
-- meaning "unowned": orders and job instances that no live session owns point at it, so
-- the sessionid foreign keys hold without NULLs.
CREATE TABLE sessions (
    sessionid    INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_key TEXT    NOT NULL,
    status       TEXT    NOT NULL
        CHECK (status IN ('ACTIVE', 'COMPLETE', 'ABNORMAL TERMINATION', 'RECOVERED')),
    hostname     TEXT    NOT NULL,
    pid          BIGINT  NOT NULL,
    started      BIGINT  NOT NULL,
    completed    BIGINT,
    heartbeat    BIGINT  NOT NULL,
    recovered_by BIGINT  REFERENCES sessions (sessionid)
);
CREATE INDEX sessions_key_status ON sessions (instance_key, status);
INSERT INTO sessions (sessionid, instance_key, status, hostname, pid, started, completed, heartbeat)
    VALUES (0, '', 'COMPLETE', '', 0, 0, 0, 0);

-- Every process of the cluster, with the endpoints it bound and its CURVE public key.
CREATE TABLE cluster_processes (
    process_network_id TEXT    PRIMARY KEY,
    host               TEXT    NOT NULL,
    node               TEXT    NOT NULL,
    pid                BIGINT  NOT NULL,
    process_type       TEXT    NOT NULL,
    client_id          TEXT,
    interfaces         TEXT,                       -- JSON
    endpoints          TEXT    NOT NULL DEFAULT '[]', -- JSON
    public_key         TEXT,
    sessionid          BIGINT  NOT NULL DEFAULT 0 REFERENCES sessions (sessionid),
    status             TEXT    NOT NULL,
    started            BIGINT  NOT NULL,
    heartbeat          BIGINT  NOT NULL
);
CREATE INDEX cluster_processes_session ON cluster_processes (sessionid);

-- Interface source code, stored once per content hash.
CREATE TABLE code (
    code_hash TEXT   PRIMARY KEY,
    lang      TEXT   NOT NULL,
    source    TEXT   NOT NULL,
    created   BIGINT NOT NULL
);

-- Interface definitions ---------------------------------------------------------------

CREATE TABLE workflows (
    workflowid    INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    description   TEXT,
    author        TEXT,
    autostart     BIGINT  NOT NULL DEFAULT 0,
    max_instances BIGINT  NOT NULL DEFAULT 1,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    keylist       TEXT,                -- JSON array of order key names
    options       TEXT,                -- JSON object
    lang          TEXT,
    class_name    TEXT,                -- workflow-level code (error handler, attach), if any
    code_hash     TEXT    REFERENCES code (code_hash),
    created       BIGINT  NOT NULL,
    modified      BIGINT  NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE steps (
    stepid          INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    description     TEXT,
    author          TEXT,
    steptype        TEXT    NOT NULL DEFAULT 'NORMAL'
        CHECK (steptype IN ('NORMAL', 'ASYNC', 'EVENT', 'SUBWORKFLOW')),
    arraytype       TEXT    NOT NULL DEFAULT 'NONE' CHECK (arraytype IN ('NONE', 'SERIES')),
    lang            TEXT    NOT NULL DEFAULT 'python',
    base_class_name TEXT,
    class_name      TEXT,
    code_hash       TEXT    REFERENCES code (code_hash),
    options         TEXT,                -- JSON object
    created         BIGINT  NOT NULL,
    modified        BIGINT  NOT NULL,
    UNIQUE (name, version)
);

-- The step graph of a workflow: each step's segment, its position for display, and the
-- steps it depends on.
CREATE TABLE workflow_steps (
    workflowid BIGINT NOT NULL REFERENCES workflows (workflowid) ON DELETE CASCADE,
    stepid     BIGINT NOT NULL REFERENCES steps (stepid),
    segmentid  BIGINT NOT NULL DEFAULT 0,
    position   BIGINT NOT NULL DEFAULT 0,
    depends_on TEXT   NOT NULL DEFAULT '[]', -- JSON array of stepids
    PRIMARY KEY (workflowid, stepid)
);
CREATE INDEX workflow_steps_step ON workflow_steps (stepid);

-- Declared errors; workflowid NULL is a global definition.
CREATE TABLE workflow_errors (
    workflow_errorid INTEGER PRIMARY KEY AUTOINCREMENT,
    workflowid       BIGINT  REFERENCES workflows (workflowid) ON DELETE CASCADE,
    error            TEXT    NOT NULL,
    description      TEXT,
    severity         TEXT    NOT NULL DEFAULT 'MAJOR',
    status           TEXT    NOT NULL DEFAULT 'E' CHECK (status IN ('E', 'R')),
    business_error   INTEGER NOT NULL DEFAULT 0 CHECK (business_error IN (0, 1)),
    retry_delay_secs BIGINT,
    level            TEXT    NOT NULL DEFAULT 'AUTO' CHECK (level IN ('AUTO', 'GLOBAL', 'WORKFLOW')),
    manually_updated INTEGER NOT NULL DEFAULT 0 CHECK (manually_updated IN (0, 1))
);
-- One definition per error per workflow, and one global one (workflowid NULL -> 0).
CREATE UNIQUE INDEX workflow_errors_unique ON workflow_errors (COALESCE(workflowid, 0), error);

CREATE TABLE services (
    serviceid    INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    description  TEXT,
    author       TEXT,
    service_type TEXT    NOT NULL DEFAULT 'USER' CHECK (service_type IN ('USER', 'SYSTEM')),
    autostart    INTEGER NOT NULL DEFAULT 0 CHECK (autostart IN (0, 1)),
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    lang         TEXT    NOT NULL DEFAULT 'python',
    class_name   TEXT,
    code_hash    TEXT    REFERENCES code (code_hash),
    options      TEXT,                -- JSON object
    created      BIGINT  NOT NULL,
    modified     BIGINT  NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE service_methods (
    service_methodid INTEGER PRIMARY KEY AUTOINCREMENT,
    serviceid        BIGINT  NOT NULL REFERENCES services (serviceid) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    description      TEXT,
    lock_type        TEXT    NOT NULL DEFAULT 'none' CHECK (lock_type IN ('none', 'read', 'write')),
    internal         INTEGER NOT NULL DEFAULT 0 CHECK (internal IN (0, 1)),
    write            INTEGER NOT NULL DEFAULT 0 CHECK (write IN (0, 1)),
    UNIQUE (serviceid, name)
);

CREATE TABLE service_state_data (
    serviceid BIGINT PRIMARY KEY REFERENCES services (serviceid) ON DELETE CASCADE,
    data      TEXT   NOT NULL, -- JSON
    modified  BIGINT NOT NULL
);

-- A job runs either on a cron schedule (minute .. wday) or every `recurring` seconds.
CREATE TABLE jobs (
    jobid                        INTEGER PRIMARY KEY AUTOINCREMENT,
    name                         TEXT    NOT NULL,
    version                      TEXT    NOT NULL,
    description                  TEXT,
    author                       TEXT,
    lang                         TEXT    NOT NULL DEFAULT 'python',
    class_name                   TEXT,
    code_hash                    TEXT    REFERENCES code (code_hash),
    active                       INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    enabled                      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    run_skipped                  INTEGER NOT NULL DEFAULT 0 CHECK (run_skipped IN (0, 1)),
    minute                       TEXT,
    hour                         TEXT,
    day                          TEXT,
    month                        TEXT,
    wday                         TEXT,
    recurring                    BIGINT,
    expiry_date                  BIGINT,
    options                      TEXT,   -- JSON object
    last_executed                BIGINT,
    last_executed_job_instanceid BIGINT,
    next_trigger                 BIGINT,
    created                      BIGINT  NOT NULL,
    modified                     BIGINT  NOT NULL,
    UNIQUE (name, version)
);

-- Orders -------------------------------------------------------------------------------

-- One row per order. sessionid is the session that owns (is running) the order; 0 when
-- none does. Crash recovery moves a dead session's IN-PROGRESS rows to RETRY and resets
-- sessionid to 0, batch by batch in id order through workflow_instance_session: with the
-- id in the index a batch is a plain range scan, and released orders leave the range.
CREATE TABLE workflow_instance (
    workflow_instanceid        INTEGER PRIMARY KEY AUTOINCREMENT,
    workflowid                 BIGINT  NOT NULL REFERENCES workflows (workflowid),
    workflowstatus             TEXT    NOT NULL
        CHECK (workflowstatus IN ('Y', 'S', 'I', 'C', 'E', 'R', 'W', 'A', 'V', 'N', 'X', 'B')),
    status_orig                TEXT,   -- status before BLOCKED / CANCELED
    custom_status              TEXT,
    sessionid                  BIGINT  NOT NULL DEFAULT 0 REFERENCES sessions (sessionid),
    priority                   BIGINT  NOT NULL DEFAULT 500,
    scheduled                  BIGINT,
    started                    BIGINT  NOT NULL,
    completed                  BIGINT,
    parent_workflow_instanceid BIGINT  REFERENCES workflow_instance (workflow_instanceid),
    subworkflow                INTEGER NOT NULL DEFAULT 0 CHECK (subworkflow IN (0, 1)),
    synchronous                INTEGER NOT NULL DEFAULT 0 CHECK (synchronous IN (0, 1)),
    business_error             INTEGER NOT NULL DEFAULT 0 CHECK (business_error IN (0, 1)),
    external_order_instanceid  TEXT,
    operator_lock              TEXT,
    retries                    BIGINT  NOT NULL DEFAULT 0,
    created                    BIGINT  NOT NULL,
    modified                   BIGINT  NOT NULL
);
CREATE INDEX workflow_instance_session ON workflow_instance (sessionid, workflow_instanceid);
CREATE INDEX workflow_instance_wf_status ON workflow_instance (workflowid, workflowstatus);
CREATE INDEX workflow_instance_queue ON workflow_instance (workflowstatus, priority, created);
CREATE INDEX workflow_instance_parent ON workflow_instance (parent_workflow_instanceid);
CREATE INDEX workflow_instance_external ON workflow_instance (external_order_instanceid);

CREATE TABLE order_instance (
    workflow_instanceid BIGINT PRIMARY KEY
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    staticdata          TEXT   NOT NULL DEFAULT '{}', -- JSON, immutable after creation
    dynamicdata         TEXT   NOT NULL DEFAULT '{}', -- JSON
    sensitive_data      TEXT                          -- JSON, superuser-only
);

-- Searchable order keys; a key may have several values.
CREATE TABLE order_instance_keys (
    workflow_instanceid BIGINT NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    keyname             TEXT   NOT NULL,
    value               TEXT   NOT NULL,
    created             BIGINT NOT NULL,
    PRIMARY KEY (workflow_instanceid, keyname, value)
);
CREATE INDEX order_instance_keys_value ON order_instance_keys (keyname, value);

-- Order uniqueness (DUPLICATE-ORDER-KEY). A separate table, not a unique index on
-- order_instance_keys, because uniqueness has a scope chosen when the order is created:
-- 'wf:<workflowid>' (this workflow version), 'name:<workflow name>' (all versions) or
-- 'global'. The primary key makes the database, not a race-prone check, refuse a duplicate.
CREATE TABLE workflow_instance_unique_keys (
    scope               TEXT   NOT NULL,
    keyname             TEXT   NOT NULL,
    value               TEXT   NOT NULL,
    workflow_instanceid BIGINT NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    PRIMARY KEY (scope, keyname, value)
);
CREATE INDEX workflow_instance_unique_keys_order
    ON workflow_instance_unique_keys (workflow_instanceid);

CREATE TABLE segment_instance (
    workflow_instanceid BIGINT NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    segmentid           BIGINT NOT NULL,
    segmentstatus       TEXT   NOT NULL
        CHECK (segmentstatus IN ('Y', 'S', 'I', 'C', 'E', 'R', 'W', 'A', 'V', 'N', 'X', 'B')),
    custom_status       TEXT,
    retry_trigger       BIGINT,
    created             BIGINT NOT NULL,
    modified            BIGINT NOT NULL,
    PRIMARY KEY (workflow_instanceid, segmentid)
);

-- ind is the array index of an array step, 0 otherwise.
CREATE TABLE step_instance (
    workflow_instanceid BIGINT  NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    stepid              BIGINT  NOT NULL REFERENCES steps (stepid),
    ind                 BIGINT  NOT NULL DEFAULT 0,
    stepstatus          TEXT    NOT NULL
        CHECK (stepstatus IN ('Y', 'S', 'I', 'C', 'E', 'R', 'W', 'A', 'V', 'N', 'X', 'B')),
    custom_status       TEXT,
    retries             BIGINT  NOT NULL DEFAULT 0,
    skip                INTEGER NOT NULL DEFAULT 0 CHECK (skip IN (0, 1)),
    async_key           TEXT,   -- key of an ASYNC / EVENT step's pending event
    started             BIGINT  NOT NULL,
    completed           BIGINT,
    error               TEXT,
    error_description   TEXT,
    error_info          TEXT,
    business_error      INTEGER NOT NULL DEFAULT 0 CHECK (business_error IN (0, 1)),
    modified            BIGINT  NOT NULL,
    PRIMARY KEY (workflow_instanceid, stepid, ind)
);

CREATE TABLE order_instance_notes (
    noteid              INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_instanceid BIGINT  NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    username            TEXT    NOT NULL,
    note                TEXT    NOT NULL,
    created             BIGINT  NOT NULL
);
CREATE INDEX order_instance_notes_order ON order_instance_notes (workflow_instanceid);

-- Every error raised against an order (Qorus's error_instance).
CREATE TABLE error_instance (
    errorid             INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_instanceid BIGINT  NOT NULL
        REFERENCES workflow_instance (workflow_instanceid) ON DELETE CASCADE,
    stepid              BIGINT,
    ind                 BIGINT,
    error               TEXT    NOT NULL,
    description         TEXT,
    info                TEXT,
    severity            TEXT    NOT NULL DEFAULT 'MAJOR',
    retry               INTEGER NOT NULL DEFAULT 0 CHECK (retry IN (0, 1)),
    business_error      INTEGER NOT NULL DEFAULT 0 CHECK (business_error IN (0, 1)),
    created             BIGINT  NOT NULL
);
CREATE INDEX error_instance_order ON error_instance (workflow_instanceid);

-- Jobs ---------------------------------------------------------------------------------

-- jobstatus: IN-PROGRESS I, COMPLETE C, ERROR E, CRASH Z.
CREATE TABLE job_instance (
    job_instanceid    INTEGER PRIMARY KEY AUTOINCREMENT,
    jobid             BIGINT  NOT NULL REFERENCES jobs (jobid),
    jobstatus         TEXT    NOT NULL CHECK (jobstatus IN ('I', 'C', 'E', 'Z')),
    sessionid         BIGINT  NOT NULL DEFAULT 0 REFERENCES sessions (sessionid),
    started           BIGINT  NOT NULL,
    completed         BIGINT,
    error             TEXT,
    error_description TEXT,
    error_info        TEXT,
    info              TEXT    -- JSON
);
CREATE INDEX job_instance_session ON job_instance (sessionid);
CREATE INDEX job_instance_job ON job_instance (jobid, started);

CREATE TABLE job_state_data (
    jobid           BIGINT PRIMARY KEY REFERENCES jobs (jobid) ON DELETE CASCADE,
    data            TEXT,   -- JSON, reset for each run
    persistent_data TEXT,   -- JSON, kept across runs
    modified        BIGINT NOT NULL
);

-- RBAC ---------------------------------------------------------------------------------

CREATE TABLE users (
    username      TEXT   PRIMARY KEY,
    password_hash TEXT,   -- argon2id PHC string; NULL for externally authenticated users
    description   TEXT,
    provider      TEXT   NOT NULL DEFAULT 'db',
    created       BIGINT NOT NULL,
    modified      BIGINT NOT NULL
);

CREATE TABLE roles (
    name        TEXT   PRIMARY KEY,
    description TEXT,
    provider    TEXT   NOT NULL DEFAULT 'db',
    created     BIGINT NOT NULL DEFAULT 0,
    modified    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE permissions (
    name        TEXT    PRIMARY KEY,
    description TEXT,
    system      INTEGER NOT NULL DEFAULT 0 CHECK (system IN (0, 1))
);

CREATE TABLE role_permissions (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    permission TEXT NOT NULL REFERENCES permissions (name) ON DELETE CASCADE,
    PRIMARY KEY (role, permission)
);

CREATE TABLE user_roles (
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    role     TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (username, role)
);
CREATE INDEX user_roles_role ON user_roles (role);

-- Interface groups. DEFAULT grants access to every interface and can be neither disabled
-- nor deleted.
CREATE TABLE groups (
    name        TEXT    PRIMARY KEY,
    description TEXT,
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created     BIGINT  NOT NULL DEFAULT 0,
    modified    BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO groups (name, description, enabled)
    VALUES ('DEFAULT', 'Default group: grants access to every interface', 1);

-- Group membership; object_id is the workflowid / serviceid / jobid of the member.
CREATE TABLE group_members (
    group_name  TEXT   NOT NULL REFERENCES groups (name) ON DELETE CASCADE ON UPDATE CASCADE,
    object_type TEXT   NOT NULL CHECK (object_type IN ('workflow', 'service', 'job')),
    object_id   BIGINT NOT NULL,
    PRIMARY KEY (group_name, object_type, object_id)
);
CREATE INDEX group_members_object ON group_members (object_type, object_id);

CREATE TABLE role_groups (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (role, group_name)
);

-- Auditing -----------------------------------------------------------------------------

-- Columns as Qorus's AUDIT_EVENTS. The object ids carry no foreign keys on purpose: the
-- audit trail must outlive the workflows, orders and jobs it mentions.
CREATE TABLE audit_events (
    audit_eventid         INTEGER PRIMARY KEY AUTOINCREMENT,
    related_audit_eventid BIGINT  REFERENCES audit_events (audit_eventid),
    workflowid            BIGINT,
    workflow_instanceid   BIGINT,
    stepid                BIGINT,
    ind                   BIGINT,
    jobid                 BIGINT,
    job_instanceid        BIGINT,
    serviceid             BIGINT,
    audit_event_code      BIGINT  NOT NULL,
    audit_user_event      TEXT,
    reason                TEXT,
    who                   TEXT    NOT NULL,
    source                TEXT    NOT NULL,
    info1                 TEXT,
    info2                 TEXT,
    created               BIGINT  NOT NULL
);
CREATE INDEX audit_events_created ON audit_events (created);
CREATE INDEX audit_events_order ON audit_events (workflow_instanceid);
CREATE INDEX audit_events_code ON audit_events (audit_event_code, created);

-- OAuth2 -------------------------------------------------------------------------------
-- Secrets, tokens and codes are stored only as hashes.

CREATE TABLE oauth2_clients (
    client_id          TEXT   PRIMARY KEY,
    client_secret_hash TEXT,
    name               TEXT   NOT NULL,
    description        TEXT,
    username           TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    permissions        TEXT   NOT NULL DEFAULT '[]', -- JSON array
    redirect_uris      TEXT   NOT NULL DEFAULT '[]', -- JSON array
    created            BIGINT NOT NULL,
    modified           BIGINT NOT NULL
);

-- client_id NULL for a user token (GET /system?action=wstoken).
CREATE TABLE oauth2_tokens (
    token_hash TEXT   PRIMARY KEY,
    client_id  TEXT   REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    username   TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    scope      TEXT,
    expires    BIGINT NOT NULL,
    created    BIGINT NOT NULL
);
CREATE INDEX oauth2_tokens_expires ON oauth2_tokens (expires);
CREATE INDEX oauth2_tokens_user ON oauth2_tokens (username);

CREATE TABLE oauth2_codes (
    code_hash    TEXT   PRIMARY KEY,
    client_id    TEXT   NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    username     TEXT   NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    redirect_uri TEXT,
    scope        TEXT,
    expires      BIGINT NOT NULL,
    created      BIGINT NOT NULL
);

-- Registered CURVE public keys of cluster API clients (Z85 text). username NULL is a key
-- registered while RBAC is off.
CREATE TABLE cluster_keys (
    public_key  TEXT   PRIMARY KEY,
    username    TEXT   REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    description TEXT,
    created     BIGINT NOT NULL,
    revoked     BIGINT
);
CREATE INDEX cluster_keys_user ON cluster_keys (username);
