# Nomad ACL policy "vigie-restart", with vigie-watch: the restart command.
#
# restart restarts a job's allocations one at a time (alloc-lifecycle) and
# waits for each to run again (read-job, in vigie-watch).
#
#   nomad acl policy apply -description "Vigie: restart" vigie-restart nomad-restart.hcl

namespace "*" {
  capabilities = ["alloc-lifecycle"]
}
