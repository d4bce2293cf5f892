// App Service authentication (Easy Auth, authsettingsV2) with Microsoft Entra ID in front of the
// gateway's functions. Deployed by main.bicep when gatewayAuth is 'entra'.
//
// Token validation only: callers (for example a Logic App with its managed identity) send
// `Authorization: Bearer <token for the gateway's audience>`; the platform validates issuer,
// audience and signature, applies the allowed applications / principals, and forwards the caller
// as X-MS-CLIENT-PRINCIPAL* headers, which the functions require when GATEWAY_AUTH=entra. Anything
// else gets 401 before it reaches the functions. No client secret: there is no login flow and no
// token store.

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

@description('Application (client) ids allowed to call (appid/azp claim), for example the client id of a Logic App\'s managed identity. Empty: no restriction by application.')
param allowedApplications array = []

@description('Object (principal) ids allowed to call (oid claim), for example the principal id of a Logic App\'s managed identity. Empty: no restriction by principal.')
param allowedPrincipalIds array = []

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
