# The Airflow image for the Docker stack: Apache's image plus what the DAG's task imports
# (requirements-airflow.txt) and what the pipeline page needs (requirements-monitor.txt: Compose's
# monitor service runs on this image), so no container installs anything when it starts.
#
# The versions come from stack/versions.env through docker-compose.yml's build args; the ARG
# defaults below equal them (tests/test_airflow_image.py checks), so a plain build matches too.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# Airflow's constraints for this image's Airflow and Python: the image keeps the file it was built
# with in ${HOME}/constraints.txt (Airflow's "Building the image" docs). The same file is published
# as https://raw.githubusercontent.com/apache/airflow/constraints-3.3.2/constraints-3.11.txt; pass
# that address (or a local copy) with --build-arg AIRFLOW_CONSTRAINTS=... to use another one.
ARG AIRFLOW_CONSTRAINTS=""

# As the image's airflow user (pip refuses root here), into its ~/.local virtualenv. Naming
# apache-airflow at the image's own version makes pip fail on a conflict instead of moving Airflow.
COPY requirements-airflow.txt /tmp/requirements-airflow.txt
COPY requirements-monitor.txt /tmp/requirements-monitor.txt
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -r /tmp/requirements-airflow.txt \
        -r /tmp/requirements-monitor.txt \
        --constraint "${AIRFLOW_CONSTRAINTS:-${HOME}/constraints.txt}"
