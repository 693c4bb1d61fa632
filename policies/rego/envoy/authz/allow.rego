# The entry point opa-envoy-plugin queries by default (envoy/authz/allow):
# the allow/deny response Garrison's library computes. See authz/CONTRACT.md.
package envoy.authz

allow := data.garrison.authz.envoy_response
