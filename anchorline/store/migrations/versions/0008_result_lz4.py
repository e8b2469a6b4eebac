"""Each job's result compressed with lz4 where PostgreSQL has it, not pglz: the projector
rewrites a proof or anchor job's result (a few KiB, past the TOAST threshold) at every stage,
and pglz_compress was PostgreSQL's heaviest function while it did.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

HAS_LZ4 = (
    "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.exec_driver_sql(HAS_LZ4).first():
        op.execute("ALTER TABLE jobs ALTER COLUMN result SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs ALTER COLUMN result SET COMPRESSION pglz")
