#!/usr/bin/env bash
# Grant the gateway's managed identity the app roles it needs upstream, with nothing but the Azure
# CLI (az rest against Microsoft Graph): the Microsoft Defender for Endpoint app roles, and Microsoft
# Graph's ThreatHunting.Read.All (advanced hunting runs through Graph's runHuntingQuery). The
# alternative to infra/defender-roles.bicep (Microsoft Graph Bicep extension); both make the same
# assignments.
#
#   GET  /api/files/{sha1}/alerts            needs Alert.Read.All (or Alert.ReadWrite.All)
#   POST /api/alerts/CreateAlertByReference  needs Alert.ReadWrite.All
#   GET  /api/files/{id}                     needs File.Read.All (file information: resolves a
#                                            SHA-256 to its SHA-1; no alert role includes it)
#   hunting (advancedqueries/run, advancedhunting/run, security/runHuntingQuery)
#                                            needs ThreatHunting.Read.All on Microsoft Graph
#
# All four roles are granted by default (the roles of shared/defender/facts.py API_FACTS). Least
# privilege: Alert.ReadWrite.All alone covers both alert calls; pass
# --roles Alert.Read.All,File.Read.All for a deployment that only ever reads, and --graph-roles ''
# for one that never hunts.
#
# Idempotent: role ids are looked up by value on the tenant's WindowsDefenderATP service principal
# (appId fc780465-2017-40d4-a0c5-307022471b92) and on Microsoft Graph's (appId
# 00000003-0000-0000-c000-000000000000), and a role the identity already holds is left alone.
#
# Who can run it: the signed-in user (az login) needs, in Microsoft Graph,
# AppRoleAssignment.ReadWrite.All and Application.Read.All, for example through the Entra role
# Privileged Role Administrator (or Global Administrator). Azure subscription roles such as Owner
# are not enough.
#
# Usage:
#   scripts/grant-defender-roles.sh --principal-id <object id of the managed identity>
#   scripts/grant-defender-roles.sh --function-app <name> --resource-group <group>
#   scripts/grant-defender-roles.sh            # inside an azd project: IDENTITY_PRINCIPAL_ID output
# Options:
#   --roles Alert.Read.All,Alert.ReadWrite.All,File.Read.All
#                                                WindowsDefenderATP app role values to grant
#                                                (comma-separated)
#   --graph-roles ThreatHunting.Read.All         Microsoft Graph app role values to grant
#                                                (comma-separated; '' for none)
#   --dry-run                                    show what would be granted, change nothing
set -euo pipefail

readonly DEFENDER_APP_ID="fc780465-2017-40d4-a0c5-307022471b92"
readonly GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
roles="Alert.Read.All,Alert.ReadWrite.All,File.Read.All"
graph_roles="ThreatHunting.Read.All"
principal_id=""
function_app=""
resource_group=""
dry_run=false

usage() {
  sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
  echo "grant-defender-roles: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --principal-id) principal_id="${2:-}"; shift 2 ;;
    --function-app) function_app="${2:-}"; shift 2 ;;
    --resource-group) resource_group="${2:-}"; shift 2 ;;
    --roles) roles="${2:-}"; shift 2 ;;
    --graph-roles) graph_roles="${2:-}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed"
az account show --query tenantId -o tsv >/dev/null 2>&1 || die "not signed in: run az login first"

# Which identity: explicit object id, or the function app's (system- or user-assigned), or the
# IDENTITY_PRINCIPAL_ID output of the azd environment.
if [[ -z "$principal_id" && -n "$function_app" ]]; then
  [[ -n "$resource_group" ]] || die "--function-app needs --resource-group"
  principal_id="$(az functionapp identity show --name "$function_app" --resource-group "$resource_group" \
    --query "principalId || values(userAssignedIdentities)[0].principalId" -o tsv)"
fi
if [[ -z "$principal_id" ]] && command -v azd >/dev/null 2>&1; then
  principal_id="$(azd env get-value IDENTITY_PRINCIPAL_ID 2>/dev/null || true)"
fi
[[ -n "$principal_id" ]] || die "no identity: pass --principal-id, or --function-app and --resource-group"
[[ "$principal_id" =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]] \
  || die "principal id '$principal_id' is not an object id (GUID)"

# Microsoft Graph of the signed-in cloud (https://graph.microsoft.com/, https://graph.microsoft.us/, ...).
graph="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
graph="${graph%/}"
[[ -n "$graph" ]] || die "cannot tell the Microsoft Graph endpoint of this cloud (az cloud show)"

graph_get() { # url query
  az rest --method get --resource "$graph" --url "$1" --query "$2" -o tsv
}

# Every role id first, so that a misspelt or missing role stops the script before any grant.
role_names=()
role_ids=()
role_resources=()
resolve_roles() { # <service principal object id> <its name> <comma-separated role values>
  local sp="$1" owner="$2" values role role_id
  IFS=',' read -r -a values <<<"$3"
  for role in "${values[@]}"; do
    role="${role//[[:space:]]/}"
    [[ -n "$role" ]] || continue
    [[ "$role" =~ ^[A-Za-z.]+$ ]] || die "not an app role value: '$role'"
    role_id="$(graph_get "$graph/v1.0/servicePrincipals/$sp" \
      "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id | [0]")"
    [[ -n "$role_id" && "$role_id" != "None" ]] || die "$owner has no application role '$role'"
    role_names+=("$role")
    role_ids+=("$role_id")
    role_resources+=("$sp")
  done
}

if [[ -n "${roles//[[:space:],]/}" ]]; then
  defender_sp="$(graph_get "$graph/v1.0/servicePrincipals(appId='$DEFENDER_APP_ID')" "id")" \
    || die "no WindowsDefenderATP service principal in this tenant (is Defender for Endpoint onboarded?)"
  [[ -n "$defender_sp" ]] || die "no WindowsDefenderATP service principal in this tenant"
  resolve_roles "$defender_sp" "WindowsDefenderATP" "$roles"
fi
if [[ -n "${graph_roles//[[:space:],]/}" ]]; then
  graph_sp="$(graph_get "$graph/v1.0/servicePrincipals(appId='$GRAPH_APP_ID')" "id")" \
    || die "no Microsoft Graph service principal in this tenant"
  [[ -n "$graph_sp" ]] || die "no Microsoft Graph service principal in this tenant"
  resolve_roles "$graph_sp" "Microsoft Graph" "$graph_roles"
fi
[[ ${#role_names[@]} -gt 0 ]] || die "no app role to grant (--roles and --graph-roles are empty)"

granted=0
kept=0
for i in "${!role_names[@]}"; do
  role="${role_names[$i]}"
  role_id="${role_ids[$i]}"
  resource="${role_resources[$i]}"
  held="$(graph_get "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    "length(value[?resourceId=='$resource' && appRoleId=='$role_id'])")"
  if [[ "$held" != "0" ]]; then
    echo "already granted: $role ($role_id) to $principal_id"
    kept=$((kept + 1))
    continue
  fi
  if $dry_run; then
    echo "would grant: $role ($role_id) to $principal_id"
    continue
  fi
  body="{\"principalId\":\"$principal_id\",\"resourceId\":\"$resource\",\"appRoleId\":\"$role_id\"}"
  if ! out="$(az rest --method post --resource "$graph" \
      --url "$graph/v1.0/servicePrincipals/$resource/appRoleAssignedTo" \
      --headers "Content-Type=application/json" --body "$body" -o none 2>&1)"; then
    # Granted meanwhile (or on a page of assignments not read above): that is the goal, not a failure.
    if [[ "$out" == *"already exists"* ]]; then
      echo "already granted: $role ($role_id) to $principal_id"
      kept=$((kept + 1))
      continue
    fi
    die "granting $role failed: $out"
  fi
  echo "granted: $role ($role_id) to $principal_id"
  granted=$((granted + 1))
done

suffix=""
$dry_run && suffix=" (dry run)"
echo "done: $granted granted, $kept already in place$suffix"
