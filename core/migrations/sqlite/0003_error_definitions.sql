-- Qorus errors definitions (NAME.qerrors.yaml) as loaded, by name: a workflow names the
-- definition it uses (`errors: NAME`), and may be loaded after it, so the definition is
-- kept on its own; loading a workflow copies its errors into workflow_errors.
CREATE TABLE error_definitions (
    name        TEXT   PRIMARY KEY,
    description TEXT,
    errors      TEXT   NOT NULL, -- JSON array of {name, desc, severity, status, business, retry_delay_secs, level}
    created     BIGINT NOT NULL,
    modified    BIGINT NOT NULL
);
