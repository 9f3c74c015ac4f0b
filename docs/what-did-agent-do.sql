-- What did agent X do between T1 and T2? (DuckDB, run from the data dir's parent)
SELECT start_time, action, target, outcome, owner_id, agent_credential_id, event_id
FROM read_parquet('audit-data/audit/**/*.parquet', hive_partitioning = true)
WHERE agent_id = 'agt_py'
  AND start_time >= TIMESTAMPTZ '2025-11-28 00:00:00+00'
  AND start_time <  TIMESTAMPTZ '2025-11-29 00:00:00+00'
ORDER BY start_time;
