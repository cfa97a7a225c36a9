// The Budgets view's GraphQL operations.
import { graphql } from '../../gql';

graphql(`
  fragment BudgetsBudgetFields on Budget {
    id
    tenantId
    projectId
    total
    used
    reserved
    available
    period
    periodStart
    periodEnd
    alertThresholds
    alertsSent
    version
    createdAt
    updatedAt
  }
`);

export const LIST = graphql(`
  query BudgetsList($first: Int, $after: String, $tenantId: String) {
    budgets(first: $first, after: $after, tenantId: $tenantId) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { ...BudgetsBudgetFields }
    }
  }
`);

export const DETAIL = graphql(`
  query BudgetsDetail($id: ID!) {
    budget(id: $id) { ...BudgetsBudgetFields }
  }
`);

export const RESERVATIONS = graphql(`
  query BudgetsReservations($budgetId: ID!, $status: ReservationStatus, $first: Int, $after: String) {
    budgetReservations(budgetId: $budgetId, status: $status, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id amount actualAmount status expiresAt taskId model requestId createdAt resolvedAt }
    }
  }
`);

export const LEDGER = graphql(`
  query BudgetsLedger($budgetId: ID!, $since: DateTime, $first: Int, $after: String) {
    budgetTransactions(budgetId: $budgetId, since: $since, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id kind reservationId deltaTotal deltaUsed deltaReserved totalAfter usedAfter reservedAfter
        version actor requestId at
      }
    }
  }
`);

export const CHANGED = graphql(`
  subscription BudgetsChanged {
    budgetChanged {
      cursor
      kind
      reservationId
      state { budgetId tenantId projectId total used reserved available }
    }
  }
`);

export const THRESHOLD = graphql(`
  subscription BudgetsThresholdReached($after: String) {
    budgetThresholdReached(after: $after) {
      cursor
      threshold
      state { budgetId tenantId projectId total used reserved available }
    }
  }
`);
