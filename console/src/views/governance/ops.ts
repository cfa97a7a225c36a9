// The Governance view's GraphQL operations, typed by codegen from the schema.
import { graphql } from '../../gql';

graphql(`
  fragment GovernanceRuleFields on GovernanceRule {
    agentRole
    maxUpdatesPerDay
    cooldownHours
    requireApproval
    approvalExpiryHours
    version
    updatedBy
    updatedAt
  }
`);

graphql(`
  fragment GovernanceStatusFields on GovernanceStatus {
    agentRole
    status
    updatesInWindow
    remainingUpdates
    windowFreesAt
    cooldownEndsAt
    pendingApprovals
    nextAllowedAt
    currentVersion
    at
    rule { ...GovernanceRuleFields }
  }
`);

graphql(`
  fragment GovernanceUpdateFields on LearningUpdate {
    id
    agentRole
    kind
    status
    agentId
    taskId
    promptUpdate
    rationale
    rollbackTo
    proposedBy
    decidedBy
    decisionNote
    promptVersion
    createdAt
    expiresAt
    decidedAt
    appliedAt
  }
`);

export const ROLES = graphql(`
  query GovernanceRoles {
    governanceRules { ...GovernanceRuleFields }
    governanceStatus { ...GovernanceStatusFields }
  }
`);

export const UPDATES = graphql(`
  query GovernanceUpdates($filter: LearningUpdateFilter, $first: Int, $after: String) {
    learningUpdates(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { ...GovernanceUpdateFields }
    }
  }
`);

export const CURRENT_PROMPT = graphql(`
  query GovernanceCurrentPrompt($agentRole: String!) {
    currentPrompt(agentRole: $agentRole) {
      agentRole
      version
      text
      createdAt
    }
  }
`);

export const VERSIONS = graphql(`
  query GovernanceVersions($agentRole: String!, $first: Int, $after: String) {
    promptVersions(agentRole: $agentRole, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        agentRole
        version
        text
        updateId
        proposedBy
        approvedBy
        rollbackOf
        createdAt
      }
    }
  }
`);

export const APPROVE = graphql(`
  mutation GovernanceApprove($id: ID!, $note: String) {
    approveLearningUpdate(id: $id, note: $note) { ...GovernanceUpdateFields }
  }
`);

export const REJECT = graphql(`
  mutation GovernanceReject($id: ID!, $reason: String!) {
    rejectLearningUpdate(id: $id, reason: $reason) { ...GovernanceUpdateFields }
  }
`);

export const ROLLBACK = graphql(`
  mutation GovernanceRollback($agentRole: String!, $version: Int!, $reason: String!, $requestId: String) {
    rollbackPrompt(agentRole: $agentRole, version: $version, reason: $reason, requestId: $requestId) {
      ...GovernanceUpdateFields
    }
  }
`);

export const CONFIGURE_RULE = graphql(`
  mutation GovernanceConfigureRule($input: ConfigureGovernanceRuleInput!) {
    configureGovernanceRule(input: $input) { ...GovernanceRuleFields }
  }
`);

export const UPDATE_CHANGED = graphql(`
  subscription GovernanceUpdateChanged {
    learningUpdateChanged {
      cursor
      kind
      update { id agentRole status }
    }
  }
`);

export const STATUS_CHANGED = graphql(`
  subscription GovernanceStatusChanged {
    governanceStatusChanged {
      cursor
      kind
      status { ...GovernanceStatusFields }
    }
  }
`);
