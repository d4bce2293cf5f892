#!/usr/bin/env bash
# Onboard a customer tenant to an MSSP's mde-alert-gateway (many tenants), run by that tenant's administrator
# with nothing but the Azure CLI, signed in to the customer tenant (az login --tenant <customer tenant>):
#
#   1. consent: the MSSP's multi-tenant app gets a service principal in this tenant (if it has none yet);
#   2. the app roles the gateway needs are granted to that service principal (scripts/grant-defender-roles.sh):
#      the Defender for Endpoint roles Alert.Read.All, Alert.ReadWrite.All, File.Read.All, and Microsoft
#      Graph's ThreatHunting.Read.All (advanced hunting through Graph), by default.
#
# Then the MSSP adds this tenant's id to the gateway's MDE_TENANTS (customerTenants in infra/main.bicep).
# Nothing secret changes hands: the gateway's user-assigned identity is the app's federated credential.
#
# Who can run it: an administrator of the customer tenant with, in Microsoft Graph, Application.ReadWrite.All
# (to create the service principal) and AppRoleAssignment.ReadWrite.All (to grant the roles), for example the
# Entra role Privileged Role Administrator or Global Administrator. Idempotent: run it again to check.
#
# Usage:
#   scripts/onboard-customer-tenant.sh --app-id <client id of the MSSP's multi-tenant app>
# Options:
#   --roles Alert.Read.All,Alert.ReadWrite.All,File.Read.All   WindowsDefenderATP app role values to grant
#   --graph-roles ThreatHunting.Read.All                       Microsoft Graph app role values to grant ('' for none)
#   --dry-run                                                  show what would be done, change nothing
set -euo pipefail

app_id=""
roles="Alert.Read.All,Alert.ReadWrite.All,File.Read.All"
graph_roles="ThreatHunting.Read.All"
dry_run=false

usage() {
  sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
  echo "onboard-customer-tenant: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --app-id) app_id="${2:-}"; shift 2 ;;
    --roles) roles="${2:-}"; shift 2 ;;
    --graph-roles) graph_roles="${2:-}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ "$app_id" =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]] \
  || die "--app-id must be the client id (a GUID) of the MSSP's multi-tenant app"
command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed"
tenant="$(az account show --query tenantId -o tsv 2>/dev/null)" || die "not signed in: run az login --tenant <tenant>"

graph="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
graph="${graph%/}"
[[ -n "$graph" ]] || die "cannot tell the Microsoft Graph endpoint of this cloud (az cloud show)"

# 1. The app's service principal in this tenant: its consent for application permissions.
sp="$(az rest --method get --resource "$graph" --url "$graph/v1.0/servicePrincipals(appId='$app_id')" \
  --query id -o tsv 2>/dev/null || true)"
if [[ -n "$sp" ]]; then
  echo "already consented: the app $app_id has the service principal $sp in tenant $tenant"
elif $dry_run; then
  echo "would consent: create the app $app_id's service principal in tenant $tenant"
else
  sp="$(az rest --method post --resource "$graph" --url "$graph/v1.0/servicePrincipals" \
    --headers "Content-Type=application/json" --body "{\"appId\":\"$app_id\"}" --query id -o tsv)" \
    || die "could not create the app's service principal (is $app_id a multi-tenant app?)"
  echo "consented: the app $app_id has the service principal $sp in tenant $tenant"
fi

# 2. The Defender app roles and Graph's, granted to that service principal.
if [[ -n "$sp" ]]; then
  args=(--principal-id "$sp" --roles "$roles" --graph-roles "$graph_roles")
  $dry_run && args+=(--dry-run)
  "$(dirname "$0")/grant-defender-roles.sh" "${args[@]}"
fi
echo "tenant $tenant: give the MSSP this tenant id for its gateway's MDE_TENANTS"
