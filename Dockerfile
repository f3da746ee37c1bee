# The Spark image for the Docker stack: master, workers and the streaming job (spark_stream.py).
#
# Versions come from stack/versions.env: ./run-docker.sh passes them as build args, and the ARG
# defaults below equal them (tests/test_dockerfile.py checks), so a plain build matches too.
ARG SPARK_VERSION=3.5.7
ARG SCALA_BINARY_VERSION_DOCKER=2.13
ARG SPARK_CASSANDRA_CONNECTOR_VERSION=3.5.1

# ---- The connector jars and their runtime dependencies, resolved with the local stack's pom ----
FROM maven:3.9-eclipse-temurin-17 AS jars
ARG SPARK_VERSION
ARG SCALA_BINARY_VERSION_DOCKER
ARG SPARK_CASSANDRA_CONNECTOR_VERSION
WORKDIR /build
COPY stack/spark-jars.pom.xml pom.xml
RUN mvn --batch-mode --quiet \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=/jars \
        -Dspark.version="${SPARK_VERSION}" \
        -Dscala.binary.version="${SCALA_BINARY_VERSION_DOCKER}" \
        -Dscc.version="${SPARK_CASSANDRA_CONNECTOR_VERSION}"

# ---- Spark on Java 17 with Python for PySpark ----
FROM eclipse-temurin:17-jdk-jammy
ARG SPARK_VERSION
ARG SCALA_BINARY_VERSION_DOCKER
ARG SPARK_CASSANDRA_CONNECTOR_VERSION
# The local stack's Python (stack/versions.env): pyarrow 26 has no wheels for jammy's own 3.10.
ARG PYTHON_VERSION=3.11
# The job's Python packages, pinned as in requirements.txt (a test keeps them equal): the
# Cassandra driver for its schema set-up, pyarrow and msgspec for its parser (mapInArrow), pandas
# because pyspark 3.5 requires it before it allows mapInArrow.
ARG CASSANDRA_DRIVER_VERSION=3.30.1
ARG PYARROW_VERSION=26.0.1
ARG MSGSPEC_VERSION=0.22.0
ARG PANDAS_VERSION=2.3.3
# The archive keeps every release; the mirrors drop one as soon as it is superseded.
ARG SPARK_ARCHIVE=https://archive.apache.org/dist/spark

# The driver and the executors' Python workers both run the venv's Python.
ENV SPARK_HOME=/opt/spark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYTHONPATH=/opt/app \
    PYTHONUNBUFFERED=1
ENV PATH="/opt/venv/bin:${SPARK_HOME}/bin:${PATH}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's point releases move under a pinned apt version, so apt packages stay unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" procps curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && "python${PYTHON_VERSION}" -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir \
        "cassandra-driver==${CASSANDRA_DRIVER_VERSION}" \
        "pyarrow==${PYARROW_VERSION}" \
        "msgspec==${MSGSPEC_VERSION}" \
        "pandas==${PANDAS_VERSION}"

# Spark for Scala ${SCALA_BINARY_VERSION_DOCKER}, checked against the release's published SHA-512
# (either `sha512sum` output or gpg's "file: AAAA BBBB ..." spread over several lines).
WORKDIR /tmp/spark-download
RUN set -eux; \
    name="spark-${SPARK_VERSION}-bin-hadoop3-scala${SCALA_BINARY_VERSION_DOCKER}"; \
    curl -fsSLO "${SPARK_ARCHIVE}/spark-${SPARK_VERSION}/${name}.tgz"; \
    curl -fsSLO "${SPARK_ARCHIVE}/spark-${SPARK_VERSION}/${name}.tgz.sha512"; \
    expected="$(tr -d '[:space:]' < "${name}.tgz.sha512" | sed -e 's/^.*\.tgz://' | cut -c1-128 | tr '[:upper:]' '[:lower:]')"; \
    [[ "${expected}" =~ ^[0-9a-f]{128}$ ]] || { echo "unreadable checksum file ${name}.tgz.sha512" >&2; exit 1; }; \
    echo "${expected}  ${name}.tgz" | sha512sum --check --strict -; \
    mkdir -p "${SPARK_HOME}"; \
    tar -xzf "${name}.tgz" -C "${SPARK_HOME}" --strip-components=1; \
    rm -rf "${name}.tgz" "${name}.tgz.sha512" "${SPARK_HOME}/examples" "${SPARK_HOME}/data"
WORKDIR /

# Add the connectors' jars that Spark does not already ship (for a library both have, Spark's own
# version stays, so nothing Spark itself loads changes), then prove both connectors are there.
COPY --from=jars /jars /tmp/connector-jars
RUN set -eux; \
    strip_version() { sed -E 's/-[0-9][^-]*(-[^-]+)*\.jar$//'; }; \
    shipped="$(find "${SPARK_HOME}/jars" -name '*.jar' -printf '%f\n' | strip_version)"; \
    for jar in /tmp/connector-jars/*.jar; do \
        artifact="$(basename "${jar}" | strip_version)"; \
        if ! grep -qxF "${artifact}" <<<"${shipped}"; then cp "${jar}" "${SPARK_HOME}/jars/"; fi; \
    done; \
    rm -rf /tmp/connector-jars; \
    test -f "${SPARK_HOME}/jars/spark-sql-kafka-0-10_${SCALA_BINARY_VERSION_DOCKER}-${SPARK_VERSION}.jar"; \
    test -f "${SPARK_HOME}/jars/spark-cassandra-connector_${SCALA_BINARY_VERSION_DOCKER}-${SPARK_CASSANDRA_CONNECTOR_VERSION}.jar"

# A non-root user; the worker's scratch space and the checkpoint volume's mount point are its own,
# so a fresh named volume mounted there inherits that ownership.
RUN groupadd --system --gid 185 spark \
    && useradd --system --uid 185 --gid spark --create-home --home-dir /home/spark --shell /bin/bash spark \
    && mkdir -p "${SPARK_HOME}/work" /opt/spark-data/checkpoint /opt/app \
    && chown -R spark:spark "${SPARK_HOME}/work" /opt/spark-data

COPY pipeline /opt/app/pipeline
COPY spark_stream.py /opt/app/spark_stream.py
COPY stack/spark/log4j2.properties ${SPARK_HOME}/conf/log4j2.properties

# The spark user created above, by number so Kubernetes-style runAsNonRoot checks can see it.
USER 185:185
WORKDIR /opt/app
EXPOSE 4040 7077 8080 8081

# The streaming job. The master and the workers run `spark-class ...` instead (docker-compose.yml).
# SPARK_DRIVER_MEMORY and SPARK_EXECUTOR_MEMORY are read by spark-submit itself.
CMD ["bash", "-c", "exec spark-submit --master \"${SPARK_MASTER:-local[*]}\" --conf \"spark.ui.port=${SPARK_UI_PORT:-4040}\" /opt/app/spark_stream.py"]
