import { headers, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import type { LoyaltyEvent } from '../../../src/domain/index.js';
import type { FakeEngine } from './fake-context.js';

/**
 * A stand-in for the engine's actors over real NATS: takes events from
 * loyalty.tx.* (core subscription beside the stream), applies them with the
 * FakeEngine (the real domain), and publishes each outcome on
 * loyalty.outcome.<kind>.<memberId> with Nats-Msg-Id <memberId>:<eventId>:<index>,
 * from its own connection, as the actors do. A re-sent id gets its first outcomes.
 */
export class FakeActor {
  private subscription: Subscription | undefined;
  received = 0;
  /** Members whose events are swallowed (no outcome: for timeout tests). */
  readonly silent = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly engine: FakeEngine,
  ) {}

  start(): void {
    this.subscription = this.nc.subscribe('loyalty.tx.*', {
      callback: (error, message) => {
        if (error !== null) return;
        this.received += 1;
        const event = message.json<LoyaltyEvent>();
        if (this.silent.has(event.memberId)) return;
        const outcomes = this.engine.apply(event);
        outcomes.forEach((outcome, index) => {
          const messageHeaders = headers();
          messageHeaders.set('Nats-Msg-Id', `${event.memberId}:${event.id}:${index}`);
          this.nc.publish(`loyalty.outcome.${String(outcome.kind)}.${event.memberId}`, JSON.stringify(outcome), { headers: messageHeaders });
        });
      },
    });
  }

  async stop(): Promise<void> {
    this.subscription?.unsubscribe();
    await this.nc.flush();
  }
}
