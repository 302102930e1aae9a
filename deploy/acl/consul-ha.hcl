# Consul policy for the leader lock of [ha] (two instances, one leader):
# the lock key and <lock_key>/config beside it (the leader's configuration
# fingerprint), and sessions: Vigie creates its own, on the node of the
# Consul agent it talks to.
#
#   consul acl policy create -name vigie-ha -description "Vigie: leader lock" -rules @consul-ha.hcl

key_prefix "vigie/leader" {
  policy = "write"
}

session_prefix "" {
  policy = "write"
}
