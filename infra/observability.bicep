// What an operator watches in Azure Monitor: a workbook over the gateway's own metrics (workbook.json) and log
// alert rules on the figures that must stay at zero. Every query names metrics of the gateway's telemetry catalogue
// (shared/telemetry/catalogue.py; tests/infra checks each name against it). Deployed by main.bicep.

@description('Name of the Application Insights component the gateway sends its telemetry to (monitoring.bicep).')
param appInsightsName string

@description('Azure region of the workbook and the alert rules.')
param location string

@description('Tags of the workbook and the alert rules.')
param tags object

@description('Resource id of an existing action group that the alert rules notify. Empty: the rules fire without notifying anyone (they still show in Azure Monitor).')
param actionGroupId string = ''

@minValue(60)
@maxValue(86400)
@description('Alert when the oldest operation still waiting for its answer is older than this many seconds.')
param oldestPendingAlertSeconds int = 900

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsights.id, 'mde-alert-gateway-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'mde-alert-gateway: Defender budget, backlog and failures'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: loadTextContent('workbook.json')
    version: 'Notebook/1.0'
  }
}

// Each rule: a query over the last window that yields one number (`value`), alerting when it exceeds `threshold`.
var alertRules = [
  {
    name: 'upstream-429'
    description: 'Defender (or Graph, for hunting) answered a calls 429: its own limit was hit although the gateway paces every call (mdegw.defender.throttled, limit calls). Check for another client using the same application, or lower RATE_LIMIT_*. Graph\'s hunting CPU 429s (limit cpu) are not counted here: no call budget prevents them, and the gateway holds every instance\'s hunting until Graph\'s time (mdegw.hunting.cpu_blocks, the workbook\'s hunting rows).'
    severity: 1
    query: 'customMetrics | where name == "mdegw.defender.throttled" | where tostring(customDimensions["limit"]) != "cpu" | summarize value = sum(valueSum)'
    aggregation: 'Total'
    threshold: 0
  }
  {
    name: 'poisoned-requests'
    description: 'A request was put on the poison queue (mdegw.queue.poisoned): it failed for good and waits for a look (and a re-drive) on the operator page. Fires on each new one, not on what already waits.'
    severity: 2
    query: 'customMetrics | where name == "mdegw.queue.poisoned" | summarize value = sum(valueSum)'
    aggregation: 'Total'
    threshold: 0
  }
  {
    name: 'storage-or-identity-down'
    description: 'The gateway could not reach its storage (rate limits, operations, queues) or get a token from its identity (mdegw.errors; a customer tenant that gives no token is that tenant\'s matter and not counted here): calls are refused or wait until it recovers.'
    severity: 1
    query: 'customMetrics | where name == "mdegw.errors" | where tostring(customDimensions["kind"]) != "tenant-identity" | summarize value = sum(valueSum)'
    aggregation: 'Total'
    threshold: 0
  }
  {
    name: 'oldest-pending-age'
    description: 'The oldest operation waiting for its answer is older than the threshold (mdegw.operations.oldest_pending_age): the backlog is not draining.'
    severity: 2
    query: 'customMetrics | where name == "mdegw.operations.oldest_pending_age" | summarize value = max(value)'
    aggregation: 'Maximum'
    threshold: oldestPendingAlertSeconds
  }
]

// Deployable on a first run: Azure Monitor checks a rule's query when the rule is created, with the rule's own
// identity, and that identity gets Reader on the component (ruleReaders below) only once the rule exists, so
// the check would fail on every first deployment: hence skipQueryValidation. The queries are checked by the tests
// instead (tests/infra/test_observability.py: every metric and dimension a query names is in the telemetry
// catalogue). Evaluations start once the role assignment has reached the identity (a few minutes).
resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in alertRules: {
  name: 'mdegw-${rule.name}-${uniqueString(appInsights.id)}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'mde-alert-gateway: ${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    skipQueryValidation: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: rule.aggregation
          metricMeasureColumn: 'value'
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(actionGroupId) ? [] : [
        actionGroupId
      ]
    }
  }
}]

// Each rule reads the component's logs with its own identity (not whoever deployed it last).
var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource ruleReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (rule, index) in alertRules: {
  name: guid(appInsights.id, rule.name, readerRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: rules[index].identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

@description('Resource id of the workbook.')
output workbookId string = workbook.id

@description('Names of the alert rules.')
output alertRuleNames array = [for (rule, index) in alertRules: rules[index].name]
