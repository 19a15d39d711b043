# Stand-in for prom/prometheus: Debian's prometheus, with the official image's config path.
FROM cascade-standin/base
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
