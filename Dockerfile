# syntax=docker/dockerfile:1
# The cloudsync image: workers, beat, Flower and the CLI. Built by docker-compose.yml (`build: .`).
#
# pyodbc reaches SQL Server through unixODBC and Microsoft's "ODBC Driver 18 for SQL Server"
# (msodbcsql18, from Microsoft's Debian 12 repository; installing it accepts Microsoft's EULA).
# The compose DSNs name that driver: ...?driver=ODBC+Driver+18+for+SQL+Server
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    curl -fsSL https://packages.microsoft.com/keys/microsoft.asc \
        | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg; \
    curl -fsSL https://packages.microsoft.com/config/debian/12/prod.list \
        -o /etc/apt/sources.list.d/mssql-release.list; \
    apt-get update; \
    ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 unixodbc; \
    apt-get purge -y --auto-remove curl gnupg; \
    rm -rf /var/lib/apt/lists/*; \
    odbcinst -q -d -n "ODBC Driver 18 for SQL Server"

# The project and its dependencies exactly as pyproject.toml declares them (no second list to drift).
WORKDIR /src
COPY . /src
RUN pip install --upgrade pip && pip install . && cloudsync --version

RUN useradd --create-home --uid 10001 cloudsync && install -d -o cloudsync /var/lib/cloudsync
USER cloudsync
WORKDIR /var/lib/cloudsync
ENV CLOUDSYNC_HOME=/var/lib/cloudsync

CMD ["cloudsync", "--help"]
