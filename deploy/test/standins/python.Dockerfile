# Stand-in for python:3.11-slim-bookworm: Debian's python3.11 (deploy/test/standins.sh).
FROM cascade-standin/base
ENV LANG=C.UTF-8
CMD ["python3"]
