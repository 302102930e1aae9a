# Nomad ACL policy "vigie-rollback", with vigie-watch: the rollback command.
#
# rollback reads the job's versions (read-job, in vigie-watch) and reverts
# to one, enforcing the version it previewed (submit-job).
#
# On Nomad 1.11.2 and later, capabilities = ["revert-job"] grants only that.
#
#   nomad acl policy apply -description "Vigie: rollback" vigie-rollback nomad-rollback.hcl

namespace "*" {
  capabilities = ["submit-job"]
}
