FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY sync ./sync
COPY mappings ./mappings
COPY celeryconfig.py ./
RUN pip install --no-cache-dir . && erpsync --version
# The configuration where the code looks for it ($ERPSYNC_CONFIG), with the mapping files beside
# it (relative paths in the config are relative to its folder). docker-compose.yml mounts the
# real config.yaml and ./mappings over these; alone, the image carries the example.
COPY config.example.yaml /etc/erpsync/config.yaml
COPY mappings /etc/erpsync/mappings
ENV ERPSYNC_CONFIG=/etc/erpsync/config.yaml \
    PYTHONPATH=/app
USER nobody
ENTRYPOINT []
CMD ["erpsync", "--help"]
