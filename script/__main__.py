"""`./run.sh [ARGS]`: with a command, manage the local stack; without one, run the pipeline."""

import sys

from pipeline.config import ConfigError
from script import run_pipeline, stack
from script.airflow_api import AirflowError

args = sys.argv[1:]
if not args or args[0].startswith("--") and args[0] not in ("--help", "-h"):
    try:
        sys.exit(run_pipeline.main(args))
    except (stack.StackError, AirflowError, ConfigError) as exc:
        stack.say(f"ERROR: {exc}")
        sys.exit(1)
sys.exit(stack.main(args))
