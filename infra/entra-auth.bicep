// App Service authentication (Easy Auth, authsettingsV2) with Microsoft Entra ID in front of the
// gateway's functions, and the gateway's app roles on its app registration. Deployed by main.bicep
// when gatewayAuth is 'entra'.
//
// Token validation only: callers (for example a Logic App with its managed identity) send
// `Authorization: Bearer <token for the gateway's audience>`; the platform validates issuer,
// audience and signature, applies the allowed applications / principals, and forwards the caller
// as X-MS-CLIENT-PRINCIPAL* headers and the bearer token; the gateway validates the token again
// itself (GATEWAY_TOKEN_ISSUER, GATEWAY_TOKEN_AUDIENCES) and requires the app role of each call.
// Anything else gets 401 before it reaches the functions. No client secret: there is no login flow
// and no token store.
//
// App roles (shared/http/settings.py Role, one per right): Alerts.Read, Alerts.Create,
// Hunting.Read, Operations.Read, Gateway.Operate. With appUniqueName (the uniqueName of the app registration
// whose client id is clientId; an app made outside Bicep gets one with a PATCH, docs/deploy.md),
// this module (through gateway-app-roles.bicep) defines them on the app registration through the Microsoft Graph Bicep extension,
// asks for v2.0 access tokens (the issuer the gateway checks), requires assignment on its service
// principal (appRoleAssignmentRequired: Entra ID then issues tokens for the gateway only to
// assigned callers) and assigns the roles in callerRoles (the playbooks' identities). The deployer
// then needs Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All in Microsoft Graph.
// Without it (or outside the public cloud, where Graph Bicep does not deploy) do the same with the
// az CLI (docs/deploy.md): the gateway requires the roles either way. The Graph resources are
// gateway-app-roles.bicep's.

@minLength(2)
@maxLength(60)
@description('Name of the existing function app (in this resource group) to protect.')
param functionAppName string

@minLength(36)
@maxLength(36)
@description('Application (client) id of the Entra app registration that represents the gateway API.')
param clientId string

@description('OpenID issuer of the tenant: <login endpoint of the cloud><tenant id>/v2.0.')
param openIdIssuer string

@description('Token audiences accepted, for example api://<client id> and <client id>.')
param allowedAudiences array

@description('Application (client) ids allowed to call (appid/azp claim), for example the client id of a Logic App\'s managed identity. Empty: no restriction by application (the gateway still requires its app roles).')
param allowedApplications array = []

@description('Object (principal) ids allowed to call (oid claim), for example the principal id of a Logic App\'s managed identity. Empty: no restriction by principal (the gateway still requires its app roles).')
param allowedPrincipalIds array = []

@description('uniqueName of the gateway\'s app registration (the one whose client id is clientId): its app roles, v2.0 tokens and required assignment are deployed here through Microsoft Graph. Empty: set them yourself (docs/deploy.md).')
param appUniqueName string = ''

@description('Display name of the gateway\'s app registration (with appUniqueName).')
param appDisplayName string = 'mde-alert-gateway'

@description('App role assignments to make on the gateway (with appUniqueName): [{principalId: <object id of a caller, e.g. a playbook\'s managed identity>, roles: [<role values>]}].')
param callerRoles array = []

// The app roles, v2.0 tokens, required assignment and the callers' assignments: Microsoft Graph
// resources, in a module of their own (checkov's parser predates Graph's `extension`).
module gatewayAppRoles 'gateway-app-roles.bicep' = if (!empty(appUniqueName)) {
  name: 'gateway-app-roles'
  params: {
    appUniqueName: appUniqueName
    appDisplayName: appDisplayName
    callerRoles: callerRoles
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// checkov reads every Microsoft.Web/sites/config resource as the 'web' site configuration; this one
// is 'authsettingsV2', which has none of the properties that the skipped checks below look for. The
// checks written for it (CKV_AZURE_56: platform.enabled, CKV_AZURE_70: requireHttps) run and pass.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: Checks the v1 'authsettings' schema (properties.enabled). This is authsettingsV2, where CKV_AZURE_56 verifies platform.enabled = true.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a property of the 'web' site configuration, not of authsettingsV2; Flex Consumption apps log to Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are a property of the 'web' site configuration, not of authsettingsV2 (and showing them to callers would leak internals).
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a property of the 'web' site configuration (IIS, Windows), not of authsettingsV2; Flex Consumption is Linux and traces requests in Application Insights.
  // checkov:skip=CKV_AZURE_80: .NET Framework version is a property of the 'web' site configuration of Windows .NET apps; this is authsettingsV2 of a Linux Python app.
  // checkov:skip=CKV_AZURE_88: Azure Files mounts are a property of the 'web' site configuration, not of authsettingsV2; the gateway mounts no file share.
  // checkov:skip=CKV_AZURE_222: Public network access is a property of the site (skipped there with its reason), not of authsettingsV2.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: openIdIssuer
        }
        validation: {
          allowedAudiences: allowedAudiences
          defaultAuthorizationPolicy: {
            allowedApplications: allowedApplications
            allowedPrincipals: {
              identities: allowedPrincipalIds
            }
          }
        }
      }
    }
  }
}

@description('The first accepted audience: the resource a caller requests its token for (a Logic App\'s managed-identity authentication Audience).')
output tokenAudience string = allowedAudiences[0]

@description('The gateway\'s app role values, defined on its app registration (empty when appUniqueName is not set: define them yourself).')
output appRoleValues array = empty(appUniqueName) ? [] : gatewayAppRoles!.outputs.appRoleValues
