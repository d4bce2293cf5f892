// The gateway's app roles on its app registration, through the Microsoft Graph Bicep extension
// (bicepconfig.json pins its version): one role per right (shared/http/settings.py Role names the
// same values; tests/infra checks both), v2.0 access tokens (issuer <login endpoint><tenant id>/v2.0
// and audience the client id: what the gateway checks), assignment required on the service principal
// (Entra ID issues tokens for the gateway only to principals assigned one of its roles), and the
// callers' assignments (the playbooks' managed identities).
//
// The app registration must have a uniqueName (an app made outside Bicep gets one with a PATCH, see
// docs/deploy.md). The deployer needs Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All
// in Microsoft Graph. Graph Bicep deployments run in the public cloud only: elsewhere use the az CLI
// steps of docs/deploy.md.
//
// Used by entra-auth.bicep when appUniqueName is set.

extension microsoftGraphV1

@minLength(1)
@description('uniqueName of the gateway\'s app registration (in this deployment\'s tenant).')
param appUniqueName string

@description('Display name of the gateway\'s app registration.')
param appDisplayName string = 'mde-alert-gateway'

@description('App role assignments to make on the gateway: [{principalId: <object id of a caller, e.g. a playbook\'s managed identity>, roles: [<role values>]}].')
param callerRoles array = []

// The gateway's app roles: shared/http/settings.py Role names the same values (tests/infra checks both).
var gatewayRoles = [
  {
    value: 'Alerts.Read'
    displayName: 'Look up alerts'
    description: 'Look up the Defender for Endpoint alerts related to a file (GET files/{hash}/alerts), in the home tenant or a customer tenant the caller may act for.'
    allowedMemberTypes: [
      'Application'
    ]
  }
  {
    value: 'Alerts.Create'
    displayName: 'Create alerts'
    description: 'Create a Defender for Endpoint alert from an event (POST alerts/CreateAlertByReference).'
    allowedMemberTypes: [
      'Application'
    ]
  }
  {
    value: 'Hunting.Read'
    displayName: 'Run hunting queries'
    description: 'Run advanced hunting queries through Microsoft Graph (POST advancedqueries/run, advancedhunting/run, security/runHuntingQuery), in the home tenant or a customer tenant the caller may act for.'
    allowedMemberTypes: [
      'Application'
    ]
  }
  {
    value: 'Operations.Read'
    displayName: 'Read own operations'
    description: 'Read the asynchronous operations the caller started (GET operations/{id}).'
    allowedMemberTypes: [
      'Application'
    ]
  }
  {
    value: 'Gateway.Operate'
    displayName: 'Operate the gateway'
    description: 'Open the operator page, read its state and re-drive poisoned requests (with the admin key).'
    allowedMemberTypes: [
      'Application'
      'User'
    ]
  }
]
// One assignment per caller and role.
var assignments = flatten(map(callerRoles, caller => map(caller.roles, role => {
  principalId: caller.principalId
  role: role
})))

resource gatewayApplication 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: appDisplayName
  api: {
    // v2.0 access tokens: issuer <login endpoint><tenant id>/v2.0 and audience the client id, as the gateway checks.
    requestedAccessTokenVersion: 2
  }
  appRoles: [for role in gatewayRoles: {
    id: guid(appUniqueName, role.value)
    value: role.value
    displayName: role.displayName
    description: role.description
    allowedMemberTypes: role.allowedMemberTypes
    isEnabled: true
  }]
}

resource gatewayServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: gatewayApplication.appId
  // Entra ID issues tokens for the gateway only to principals assigned one of its app roles.
  appRoleAssignmentRequired: true
}

resource callerRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for assignment in assignments: {
  principalId: assignment.principalId
  resourceId: gatewayServicePrincipal.id
  appRoleId: guid(appUniqueName, assignment.role)
}]

@description('Values of the gateway\'s app roles.')
output appRoleValues array = map(gatewayRoles, role => role.value)

@description('Object id of the gateway\'s service principal (the resource of its app role assignments).')
output servicePrincipalId string = gatewayServicePrincipal.id
