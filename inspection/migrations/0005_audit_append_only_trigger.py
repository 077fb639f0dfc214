"""On PostgreSQL, refuse UPDATE and DELETE of audit rows in the database itself, so that
not even raw SQL from the application role rewrites history. (SQLite, the single-box
default, relies on the ORM guard: its test flush deletes rows, which a trigger would block.)"""

from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION loupe_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER inspection_auditevent_append_only
    BEFORE UPDATE OR DELETE ON inspection_auditevent
    FOR EACH ROW EXECUTE FUNCTION loupe_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS inspection_auditevent_append_only ON inspection_auditevent;
DROP FUNCTION IF EXISTS loupe_audit_append_only();
"""


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("inspection", "0004_audit_trail")]
    operations = [migrations.RunPython(create, drop)]
