# Nomad ACL policy "vigie-deploy", with vigie-watch: the deploy command.
#
# deploy previews with Nomad's plan and registers the job (submit-job);
# from nomad.jobspecs_dir it first has Nomad parse the jobspec (parse-job,
# also granted by submit-job). Restrict the namespaces to those Vigie may
# deploy to.
#
# On Nomad 1.11.2 and later, the finer capabilities
#   capabilities = ["plan-job", "register-job", "parse-job"]
# grant the same without the rest of submit-job (deregistering, dispatch).
#
#   nomad acl policy apply -description "Vigie: deploy" vigie-deploy nomad-deploy.hcl

namespace "*" {
  capabilities = ["submit-job", "parse-job"]
}
