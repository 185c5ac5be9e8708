FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY sync ./sync
COPY mappings ./mappings
COPY celeryconfig.py ./
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
CMD ["erpsync", "--help"]
