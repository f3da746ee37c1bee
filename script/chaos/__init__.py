"""`./run.sh chaos`: random faults on every service while the real DAG streams, then a count.

A nemesis (``nemesis.py``) picks, every 45-120 s of a seeded schedule, one process of the stack
and one action (SIGKILL, SIGSTOP for 5-40 s then SIGCONT, or a clean restart) while a driver
(``driver.py``) triggers the real DAG through Airflow's API, run after run, paced. Nobody
restarts anything: every service runs under its supervisor (``script/supervise.py``). At the
end ``check.py`` compares every user Kafka acknowledged with its row in Cassandra, field for
field, and ``cli.py`` writes the timeline (JSON and a chart) and prints the table.
"""
