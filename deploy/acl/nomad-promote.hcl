# Nomad ACL policy "vigie-promote", with vigie-watch: the promote command.
#
# promote promotes the canaries of the deployment it previewed
# (submit-job, checked in the deployment's namespace).
#
# On Nomad 1.11.2 and later, capabilities = ["promote-deployment"] grants
# only that.
#
#   nomad acl policy apply -description "Vigie: promote" vigie-promote nomad-promote.hcl

namespace "*" {
  capabilities = ["submit-job"]
}
