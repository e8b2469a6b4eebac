FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY anchorline anchorline
COPY services services
COPY schemas schemas
COPY contracts contracts
RUN pip install --no-cache-dir -e .
CMD ["anchorline", "--help"]
