# backup-cloud developer / CI entry points.
#   make deps           system packages and the glibc 2.31 sysroot every x86_64 build
#                       links against (scripts/install-deps, scripts/glibc-floor-up)
#   make services       LocalStack behind the AWS gate + instance simulator + PostgreSQL (this
#                       machine's, and a newer one) + MariaDB (idempotent)
#   make services-down  stop them all
#   make test           services, the root filesystems the boot tests boot (tests/harness/
#                       rootfs-up: this machine's Debian and Debian 11, cached in
#                       .state/rootfs), the test world's own tests
#                       (localstack/tests: the AWS gate, its evaluator, IMDS), then
#                       cargo test with the env below
#   make lint           cargo fmt --check, clippy -D warnings
#   make demo           services, cargo build, scripts/demo
#   make dist           scripts/dist: the agents for x86_64 and aarch64 in dist/, each checked
#                       (not part of `make test`: the cross build alone takes ~20 minutes here)
#   make bench          services, release build, bench/run.py: prints a table and
#                       writes bench-results.json (not part of `make test`)

SHELL := /bin/bash

# Everything the tests need to find the services.
export BACKUP_CLOUD_TEST_ENDPOINT ?= http://127.0.0.1:4566
export BACKUP_CLOUD_TEST_STATE_DIR ?= $(CURDIR)/.state
export BACKUP_CLOUD_TEST_SIM_DIR ?= $(CURDIR)/.state/sim
export BACKUP_CLOUD_TEST_PG_HOST ?= 127.0.0.1
export BACKUP_CLOUD_TEST_PG_PORT ?= 55432
# a PostgreSQL newer than the machine's pg_dump (tests/harness/postgres-up newer)
export BACKUP_CLOUD_TEST_PG_NEWER_PORT ?= 55433
export BACKUP_CLOUD_TEST_PG_USER ?= backup
export BACKUP_CLOUD_TEST_PG_PASSWORD ?= backup-test-pw
export BACKUP_CLOUD_TEST_PG_SUPERUSER ?= postgres
export BACKUP_CLOUD_TEST_PG_SUPERUSER_PASSWORD ?= postgres-admin-pw
export BACKUP_CLOUD_TEST_PG_SOCKET_DIR ?= $(CURDIR)/.state/pg-socket
export BACKUP_CLOUD_TEST_MYSQL_HOST ?= 127.0.0.1
export BACKUP_CLOUD_TEST_MYSQL_PORT ?= 53306
export BACKUP_CLOUD_TEST_MYSQL_USER ?= backup
export BACKUP_CLOUD_TEST_MYSQL_PASSWORD ?= backup-test-pw
export BACKUP_CLOUD_TEST_MYSQL_SOCKET ?= $(CURDIR)/.state/mariadb.sock
export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test
export AWS_REGION ?= us-east-1
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED ?= true

.PHONY: deps services services-down test lint demo bench dist

deps:
	scripts/install-deps

services: deps
	localstack/up
	tests/harness/postgres-up
	tests/harness/postgres-up newer
	tests/harness/mariadb-up

services-down:
	-localstack/down
	-tests/harness/postgres-down
	-tests/harness/postgres-down newer
	-tests/harness/mariadb-down

test: services
	tests/harness/rootfs-up
	tests/harness/rootfs-up debian-bullseye
	.state/venv/bin/python -m unittest discover -s localstack/tests
	cargo test --all-targets --no-fail-fast

lint: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

demo: services
	cargo build
	scripts/demo

bench: services
	cargo build --release
	.state/venv/bin/python bench/run.py

dist:
	scripts/dist
