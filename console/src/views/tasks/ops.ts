// The Tasks view's GraphQL operations, typed by codegen from the schema.
import { graphql } from '../../gql';

graphql(`
  fragment TasksEscalationFields on Escalation {
    id
    reason
    severity
    status
    resolution
    resolvedBy
    pattern
    suggestedFix
    createdBy
    createdAt
    resolvedAt
    agent { id name role }
  }
`);

export const TASKS = graphql(`
  query TasksList($first: Int, $after: String, $state: TaskState) {
    tasks(first: $first, after: $after, state: $state) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id
        title
        state
        priority
        updatedAt
        assignee { id name }
        escalations { id status }
      }
    }
  }
`);

export const ESCALATIONS = graphql(`
  query TasksEscalations($first: Int, $after: String, $status: EscalationStatus) {
    escalations(first: $first, after: $after, status: $status) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        ...TasksEscalationFields
        task { id title state }
      }
    }
  }
`);

export const TASK = graphql(`
  query TasksDetail($id: ID!) {
    task(id: $id) {
      id
      title
      description
      state
      priority
      tenantId
      createdBy
      createdAt
      updatedAt
      assignee { id name role status }
      escalations { ...TasksEscalationFields }
      gateResults {
        gate
        passed
        detail
        reportedBy
        reportedAt
        refusalsInARow
      }
      remediationPlan {
        id
        targetState
        status
        createdBy
        createdAt
        closedAt
        actions {
          id
          gate
          actionType
          priority
          agentRole
          reason
          status
          doneBy
          doneAt
        }
      }
    }
  }
`);

export const RESOLVE = graphql(`
  mutation TasksResolveEscalation($id: ID!, $resolution: String!) {
    resolveEscalation(id: $id, resolution: $resolution) { ...TasksEscalationFields }
  }
`);

export const TASK_CHANGED = graphql(`
  subscription TasksChanged {
    taskChanged {
      cursor
      kind
      task { id title state updatedAt }
    }
  }
`);
