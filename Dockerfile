# The example project's image: this project and the example's dependencies, installed from
# uv.lock the way `make demo` does (`uv sync --locked`, Python 3.12): the `example` group and the
# `fast` extra (uvloop, hiredis), without the test, lint and docs tools.
FROM python:3.12-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_NO_PYTHON_DOWNLOADS=1 \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m pip install --no-cache-dir uv

WORKDIR /app
# The locked dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --locked --no-default-groups --group example --extra fast --no-install-project
COPY routing ./routing
COPY worker ./worker
COPY example ./example
RUN uv sync --locked --no-default-groups --group example --extra fast

ENV DJANGO_SETTINGS_MODULE=example.settings \
    EXAMPLE_DATA_DIR=/data
EXPOSE 8000
CMD ["uvicorn", "example.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "off"]
