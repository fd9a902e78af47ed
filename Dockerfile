# AttnRec Lab: the Streamlit app on CPU torch.
#   docker build -t attnrec-lab .
#   docker run -p 8501:8501 -e RECDEMO_ACCESS_PASSWORD=... -v attnrec-data:/app/data attnrec-lab
# It listens on 0.0.0.0: set the access password (docs/operations.md) beyond a trusted machine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECDEMO_STATE_DIR=/app/data

WORKDIR /app

# CPU torch first, from PyTorch's CPU index: the default wheel would pull several GB of CUDA.
COPY requirements.txt .
RUN pip install "$(grep -E '^torch==' requirements.txt)" --index-url https://download.pytorch.org/whl/cpu \
    && pip install -r requirements.txt

RUN useradd --create-home --uid 1000 app && mkdir -p /app/data && chown app:app /app/data
COPY --chown=app:app . .
USER app

VOLUME ["/app/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() == b'ok' else 1)"

# bootstrap fills an empty database and trains the model once; the volume keeps both.
CMD ["sh", "-c", "python -m recengine bootstrap && exec streamlit run app.py --server.port 8501 --server.address 0.0.0.0 --server.headless true --browser.gatherUsageStats false"]
