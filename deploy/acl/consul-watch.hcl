# Consul ACL policy "vigie-watch": the health checks behind Vigie's alerts.
#
# Vigie reads /v1/health/state/any. Consul does not refuse a token that may
# not read some nodes or services: it silently leaves their checks out (and
# Vigie logs a warning when it says so). A check is shown only to a token
# that may read its node and, for a service check, its service: hence read
# on every node and service. Maintenance (_node_maintenance,
# _service_maintenance:<id>) needs nothing more.
#
#   consul acl policy create -name vigie-watch -description "Vigie: health" -rules @consul-watch.hcl

node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}
