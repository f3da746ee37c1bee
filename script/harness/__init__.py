"""What the benchmark and the fault runs put beside the shared stack: stream jobs with a topic,
keyspace and checkpoint of their own (`side.SideJob`), and load generator processes
(`side.LoadGen`, running `loadgen`)."""
