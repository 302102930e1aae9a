// Package deploy holds what runs Vigie elsewhere than a developer's shell:
// the Nomad job (vigie.nomad.hcl) and the Nomad and Consul ACL policies
// (acl/). It has no code; its test checks the job as "nomad job validate"
// would, and that the configuration the job renders is one Vigie loads.
package deploy
