"""`./run.sh faults`: what the pipeline does when things go wrong, counted.

Each scenario (``scenarios.SCENARIOS``) runs against the local stack with a stream job, topic,
keyspace and checkpoint of its own (``rig.SupervisedJob``, restarted by the same supervisor as
the user's job), offers users, breaks something, and then counts: users sent, rows in
Cassandra, dead letters, lost (sent but not stored, or stored but not equal), extra (stored but
never sent), and the time until the pipeline wrote again. The suite runs the same scenarios,
shorter (``tests/test_faults.py``).
"""
