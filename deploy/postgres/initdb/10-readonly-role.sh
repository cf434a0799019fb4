#!/bin/sh
# First start of the compose PostgreSQL: create the read-only role (see ../readonly-role.sql).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader=inspection_reader -v reader_password="${INSPECTION_READER_PASSWORD}" \
  -v owner="$POSTGRES_USER" -v dbname="$POSTGRES_DB" \
  -f /opt/inspection/readonly-role.sql
