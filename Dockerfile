# fnbus in a container: docker build -t fnbus . && docker run -p 1883:1883 -v fnbus-data:/var/lib/fnbus fnbus
# Mount a configuration at /etc/fnbus/fnbus.config.json (`{}` is one) with its identities file beside it: the
# gateway listens on every address inside the container, which needs identities (or "allowAnonymous": true).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY . .
RUN npm run build && npm pack --pack-destination /tmp

FROM node:20-bookworm-slim
COPY --from=build /tmp/fnbus-*.tgz /tmp/
RUN npm install -g --no-audit --no-fund /tmp/fnbus-*.tgz && rm /tmp/fnbus-*.tgz \
  && mkdir -p /etc/fnbus /var/lib/fnbus && chown node:node /var/lib/fnbus
USER node
WORKDIR /var/lib/fnbus
ENV FNBUS_HOST=0.0.0.0 \
    FNBUS_CONFIG=/etc/fnbus/fnbus.config.json \
    FNBUS_DATA_DIR=/var/lib/fnbus/data
VOLUME ["/var/lib/fnbus"]
EXPOSE 1883
STOPSIGNAL SIGTERM
CMD ["fnbus", "start"]
