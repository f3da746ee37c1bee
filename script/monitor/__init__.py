"""The live pipeline page (http://localhost:MONITOR_PORT): `watch` reads the services, `collect`
answers one question each, `app` lays them out with Dash. A tool on the stack library, like
`./run.sh status`; the local stack runs it as its `monitor` service."""
