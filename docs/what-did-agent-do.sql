-- What did agent X do between T1 and T2? (DuckDB, run from the data dir's parent)
SELECT start_time, action, target, outcome, owner_id, agent_credential_id, event_id
FROM read_parquet('audit-data/audit/**/*.parquet', hive_partitioning = true)
WHERE agent_id = 'agt_7f3'
  AND start_time >= now() - INTERVAL '24 hours'   -- T1, or TIMESTAMPTZ '2026-11-28 03:00:00+00'
  AND start_time <  now()                         -- T2
ORDER BY start_time;
