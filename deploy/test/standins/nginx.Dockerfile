# Stand-in for nginx:1.27-alpine: Debian's nginx (1.22), reading /etc/nginx/conf.d/*.conf.
FROM cascade-standin/base
CMD ["nginx", "-g", "daemon off;"]
