// Many tenants (an MSSP): makes the gateway's user-assigned managed identity a federated identity credential of the
// multi-tenant app registration, so that the gateway gets app-only Defender tokens in every customer tenant that
// consented to that app, with no secret. Through the Microsoft Graph Bicep extension (bicepconfig.json pins it).
//
// Facts (Microsoft's documentation on managed identities as federated credentials): only a user-assigned identity;
// the app registration in the identity's own tenant (this deployment's), multi-tenant; issuer
// <login endpoint><tenant id>/v2.0; subject the identity's principal (object) id; one audience,
// api://AzureADTokenExchange (api://AzureADTokenExchangeUSGov in US Government); at most 20 per app.
// The app must have a uniqueName (an app made outside Bicep gets one with a PATCH, see docs/many-tenants.md).
// Graph Bicep deployments run in the public cloud only: elsewhere add the credential in the portal (the app's
// Certificates & secrets, Federated credentials, "Managed identity"), as docs/many-tenants.md shows.
//
// Used by main.bicep when customerTenants is set and identityType is UserAssigned.

extension microsoftGraphV1

@minLength(1)
@description('uniqueName of the existing multi-tenant app registration (in this deployment\'s tenant).')
param appUniqueName string

@minLength(36)
@maxLength(36)
@description('Object (principal) id of the gateway\'s user-assigned managed identity: the credential\'s subject.')
param identityPrincipalId string

@minLength(1)
@maxLength(100)
@description('Name of the federated credential on the app (unique per app).')
param credentialName string

@allowed([
  'api://AzureADTokenExchange'
  'api://AzureADTokenExchangeUSGov'
])
@description('Audience of the identity\'s assertion: api://AzureADTokenExchange, or the US Government one.')
param audience string = 'api://AzureADTokenExchange'

resource app 'Microsoft.Graph/applications@v1.0' existing = {
  uniqueName: appUniqueName
}

resource credential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/${credentialName}'
  audiences: [
    audience
  ]
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  subject: identityPrincipalId
  description: 'mde-alert-gateway: the gateway\'s user-assigned identity, for Defender tokens in customer tenants'
}

@description('Client id of the multi-tenant app the credential was added to.')
output appClientId string = app.appId
