-- A role that can read the results database and nothing else: for Grafana, the dashboard,
-- notebooks and BI tools. psql variables: reader (role name), reader_password, owner (the role
-- that runs the migrations and so owns the tables).
--   psql -v reader=inspection_reader -v reader_password=... -v owner=inspection -d inspection -f readonly-role.sql
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"dbname" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
-- tables the owner creates later (the next migrations) are readable too
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
