#!/usr/bin/env bash
# What the tests need besides Rust: the Python environment the ONNX, Spark and gRPC checks use
# (.venv, made once), and the Java runtime Spark needs. Called by scripts/test.sh; CI starts it
# in the background first, so that the downloads overlap the compile.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/python-env.sh tests/onnx/requirements.txt tests/spark/requirements.txt tests/grpc/requirements.txt

# The Spark test (tests/spark/check.py) runs spark-submit in local mode, which needs a Java
# runtime (Spark 3.5: Java 17). Debian's is installed when none is found.
if ! command -v java >/dev/null 2>&1 && ! [ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "scripts/test-env.sh: the Spark test needs a Java runtime; java is not on PATH, and without root or sudo" \
            "it cannot be installed here: install openjdk-17-jre-headless (or set JAVA_HOME) and run again" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test-env.sh: the Spark test needs a Java runtime and there is no apt-get to install one:" \
            "install Java 17 (or set JAVA_HOME) and run again" >&2
        exit 1
    fi
    echo "installing a Java runtime for the Spark test (openjdk-17-jre-headless)" >&2
    "${sudo[@]}" apt-get update -qq
    # Debian 12 ships Java 17; a release without it gets its default runtime instead.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openjdk-17-jre-headless ||
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            default-jre-headless
fi
