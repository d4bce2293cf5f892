// Monitoring of the gateway: a Log Analytics workspace and a workspace-based Application Insights component,
// both Entra-authenticated only (local auth disabled: the app publishes telemetry with its managed identity).
// Deployed by main.bicep.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Azure region of both.')
param location string

@description('Tags of both.')
param tags object

@minValue(30)
@maxValue(730)
@description('Days that Log Analytics keeps the logs and Application Insights telemetry.')
param logRetentionInDays int

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: logRetentionInDays
    sku: {
      name: 'PerGB2018'
    }
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Name of the Log Analytics workspace.')
output logAnalyticsName string = logAnalytics.name
