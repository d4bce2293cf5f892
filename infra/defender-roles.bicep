// Grants a managed identity the app roles that the gateway needs upstream, through the Microsoft
// Graph Bicep extension (bicepconfig.json pins its version): the Microsoft Defender for Endpoint app
// roles, as app role assignments on the WindowsDefenderATP service principal (appId
// fc780465-2017-40d4-a0c5-307022471b92), and Microsoft Graph's ThreatHunting.Read.All on the
// Microsoft Graph service principal (appId 00000003-0000-0000-c000-000000000000), which advanced
// hunting needs since the gateway runs hunting queries through Graph's runHuntingQuery.
//
//   GET  /api/files/{sha1}/alerts            needs Alert.Read.All (or Alert.ReadWrite.All)
//   POST /api/alerts/CreateAlertByReference  needs Alert.ReadWrite.All
//   GET  /api/files/{id}                     needs File.Read.All (file information: the gateway
//                                            resolves a SHA-256 to its SHA-1 with it)
//   POST {graph}/v1.0/security/runHuntingQuery  needs ThreatHunting.Read.All on Microsoft Graph (every
//                                            hunting route of the gateway: advancedqueries/run,
//                                            advancedhunting/run, security/runHuntingQuery)
//
// Least privilege: Alert.ReadWrite.All alone covers both alert calls and Alert.Read.All adds
// nothing; both are granted by default because that is what the deployment specifies (and a
// read-only variant of the gateway would keep only Alert.Read.All). File.Read.All is a separate
// role that no alert role includes: without it SHA-256 lookups fail with 403 (SHA-1 lookups still
// work). ThreatHunting.Read.All is a Graph permission, not a Defender one: without it every hunting
// call fails with 403 (Authorization_RequestDenied). The roles are those of shared/defender/facts.py
// API_FACTS (each on the service principal of the API's Service). Pass appRoleValues or
// graphAppRoleValues to narrow it (graphAppRoleValues=[] for a gateway that never hunts).
//
// The deployer needs, in Microsoft Graph, AppRoleAssignment.ReadWrite.All and
// Application.Read.All (delegated, as consented for the Azure CLI / PowerShell), or an Entra role
// that includes them such as Privileged Role Administrator. Azure subscription roles (Owner,
// Contributor) are not enough. scripts/grant-defender-roles.sh does the same with plain az CLI.
//
// Used by main.bicep when grantDefenderAppRoles is true, or on its own:
//   az deployment group create -g <resource group> -f infra/defender-roles.bicep \
//     -p principalId=<IDENTITY_PRINCIPAL_ID output of main.bicep>

extension microsoftGraphV1

@minLength(36)
@maxLength(36)
@description('Object (principal) id of the managed identity that calls Defender for Endpoint: the IDENTITY_PRINCIPAL_ID output of main.bicep.')
param principalId string

@description('Values of the WindowsDefenderATP app roles to grant. The gateway needs Alert.ReadWrite.All for POST alerts/CreateAlertByReference (Alert.Read.All is enough for GET files/{sha1}/alerts alone) and File.Read.All for GET files/{id}, which resolves a SHA-256 to its SHA-1.')
param appRoleValues array = [
  'Alert.Read.All'
  'Alert.ReadWrite.All'
  'File.Read.All'
]

@description('Values of the Microsoft Graph app roles to grant. The gateway needs ThreatHunting.Read.All for advanced hunting (Graph\'s runHuntingQuery, behind every hunting route of the gateway). Empty: no Graph role (a gateway that never hunts).')
param graphAppRoleValues array = [
  'ThreatHunting.Read.All'
]

// WindowsDefenderATP: the first-party application behind the Defender for Endpoint API.
var defenderAppId = 'fc780465-2017-40d4-a0c5-307022471b92'
// Microsoft Graph (shared/defender/facts.py GRAPH_APP_ID): the same appId in every tenant and national cloud.
var graphAppId = '00000003-0000-0000-c000-000000000000'

resource defenderServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: defenderAppId
}

// The role ids are looked up by value on the tenant's service principal, never hard-coded.
resource defenderAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for roleValue in appRoleValues: {
  principalId: principalId
  resourceId: defenderServicePrincipal.id
  appRoleId: filter(defenderServicePrincipal.appRoles, role => role.value == roleValue)[0].id
}]

resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// Looked up by value on Microsoft Graph's service principal too, as above.
resource graphAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for roleValue in graphAppRoleValues: {
  principalId: principalId
  resourceId: graphServicePrincipal.id
  appRoleId: filter(graphServicePrincipal.appRoles, role => role.value == roleValue)[0].id
}]

@description('Object id of the WindowsDefenderATP service principal in this tenant.')
output defenderServicePrincipalId string = defenderServicePrincipal.id

@description('Object id of the Microsoft Graph service principal in this tenant.')
output graphServicePrincipalId string = graphServicePrincipal.id

@description('Values of the WindowsDefenderATP app roles granted to the identity.')
output grantedAppRoles array = appRoleValues

@description('Values of the Microsoft Graph app roles granted to the identity.')
output grantedGraphAppRoles array = graphAppRoleValues
